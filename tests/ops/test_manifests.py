"""The operations manifests: the Prometheus alert rules pass `promtool check rules` and fire, in
`promtool test rules` (tests/ops/alerts_test.yaml), on a synthetic series of their trouble and not on a healthy
one; the Grafana dashboard is a dashboard on a Prometheus datasource variable whose expressions parse and name
only metrics that `/metrics` exports.

Never skipped: without `promtool` the tests fail and say how to install it (Debian's `prometheus` package,
which `.ci/run` installs).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from croco.settings import Settings
from tests.ops.scrape import scrape
from tests.web.conftest import Client

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "manifests" / "prometheus-alerts.yaml"
ALERT_TESTS = ROOT / "tests" / "ops" / "alerts_test.yaml"
DASHBOARD = ROOT / "manifests" / "grafana-dashboard.json"
METRIC = re.compile(r"croco_[a-z_]+")
GRAFANA_RANGE = re.compile(r"\$__(?:rate_)?interval")
"""The range variables the dashboard's expressions use, replaced by a fixed range to check them as PromQL."""
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def promtool(*arguments: str | Path) -> str:
    """Run Debian's promtool from the repository root; its output, after asserting it succeeded."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool missing: these tests need Debian's prometheus package, install it with "
                    "`apt-get install prometheus` (.ci/run does)", pytrace=False)
    done = subprocess.run([path, *map(str, arguments)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"promtool {' '.join(map(str, arguments))}:\n{done.stdout}{done.stderr}"
    return done.stdout


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def graph_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The panels that query, the ones inside rows included (a collapsed row holds its panels)."""
    for panel in board["panels"]:
        yield from panel["panels"] if panel["type"] == "row" else [panel]


def expressions() -> dict[str, str]:
    """Every PromQL expression of both manifests, by where it is (for messages)."""
    found = {f"alert {rule['alert']}": rule["expr"] for rule in alert_rules()}
    found.update({f"panel {panel['title']!r} {target['refId']}": target["expr"]
                  for panel in graph_panels(dashboard()) for target in panel["targets"]})
    return found


def test_the_alert_rules_pass_promtool_check() -> None:
    assert f"SUCCESS: {len(alert_rules())} rules found" in promtool("check", "rules", ALERTS)


def test_each_alert_fires_on_its_trouble_and_not_when_healthy() -> None:
    promtool("test", "rules", ALERT_TESTS)


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    cases = [case for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    alerts = {rule["alert"] for rule in alert_rules()}
    assert {case["alertname"] for case in cases if case["exp_alerts"]} == alerts
    assert {case["alertname"] for case in cases if not case["exp_alerts"]} == alerts


def test_every_alert_waits_and_says_what_it_means_and_where_the_run_book_is() -> None:
    for rule in alert_rules():
        assert rule["for"], rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["runbook"] == f'README.md, section "Run book", {rule["alert"]}'


def test_the_sync_lag_alert_is_three_default_poll_intervals() -> None:
    """The rule hard-codes the threshold (it cannot read the setting): changing the default must change it."""
    (rule,) = (rule for rule in alert_rules() if rule["alert"] == "CrocoSyncLagHigh")
    assert rule["expr"] == f"max(croco_sync_lag_seconds) > {3 * Settings.model_fields['sync_interval_seconds'].default}"


def test_the_dashboard_is_a_grafana_dashboard_on_a_prometheus_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    (variable,) = (v for v in board["templating"]["list"] if v["name"] == "datasource")
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    panels = list(graph_panels(board))
    ids = [panel["id"] for panel in board["panels"] if panel["type"] == "row"] + [panel["id"] for panel in panels]
    assert len(set(ids)) == len(ids)
    for panel in panels:
        place = panel["gridPos"]
        assert panel["title"] and place["w"] > 0 and place["h"] > 0 and place["x"] + place["w"] <= 24, panel
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"]), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"].strip(), panel["title"]


def test_the_dashboard_expressions_are_promql(tmp_path: Path) -> None:
    """Checked as recording rules by promtool, Grafana's range variables replaced by a fixed range."""
    rules = [{"record": f"dashboard:panel_{panel['id']}_{target['refId']}",
              "expr": GRAFANA_RANGE.sub("5m", target["expr"])}
             for panel in graph_panels(dashboard()) for target in panel["targets"]]
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in promtool("check", "rules", tmp_path / "dashboard.yaml")


async def test_the_manifests_name_only_metrics_that_metrics_exports(api: Client) -> None:
    """Against the families a fresh process announces: a labelled counter has no series before its first
    event, but its `# TYPE` line is there."""
    exported = (await scrape(api)).series_names()
    for where, expr in expressions().items():
        named = set(METRIC.findall(expr))
        assert named, f"{where} names no croco metric: {expr}"
        assert named <= exported, f"{where} names {sorted(named - exported)}, which /metrics does not export"
