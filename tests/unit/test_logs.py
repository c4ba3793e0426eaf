"""Logs carry ids as structured fields and never a secret."""

from __future__ import annotations

import json
import logging

import pytest

from croco.logs import JsonFormatter, SecretMasker, TextFormatter, masker


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("croco.test", logging.INFO, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_context_fields() -> None:
    line = JsonFormatter().format(_record("synced", user_id="u1", calendar_id="c1", provider="caldav"))
    entry = json.loads(line)
    assert entry["msg"] == "synced"
    assert (entry["user_id"], entry["calendar_id"], entry["provider"]) == ("u1", "c1", "caldav")


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_registered_secret_values_are_masked_wherever_they_appear(formatter: logging.Formatter) -> None:
    masker.register("s3cr3t-token-value")
    line = formatter.format(_record("login failed for s3cr3t-token-value", detail="x s3cr3t-token-value y"))
    assert "s3cr3t-token-value" not in line
    assert "***" in line


@pytest.mark.parametrize("key", ["password", "refresh_token", "client_secret", "credentials"])
def test_fields_named_like_secrets_are_masked(key: str) -> None:
    entry = json.loads(JsonFormatter().format(_record("connect", **{key: "hunter2-value"})))
    assert entry[key] == "***"


def test_short_values_are_not_registered_so_ordinary_words_survive() -> None:
    local = SecretMasker()
    local.register("ok", "")
    assert local.scrub("ok then") == "ok then"
