"""Reading `/metrics` as Prometheus would: over HTTP, parsed by prometheus-client's own text parser."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.web.conftest import Client

Labels = frozenset[tuple[str, str]]
SERIES_SUFFIXES: Mapping[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
"""What prometheus-client appends to a family's name in its samples (a gauge's sample is the family's name)."""


@dataclass(frozen=True)
class Scrape:
    """One scrape's samples, by sample name (`croco_sync_cycles_total`, `..._bucket`) and label set."""

    samples: Mapping[tuple[str, Labels], float]
    families: Mapping[str, str] = field(default_factory=dict)
    """Every metric family announced (`# TYPE`), samples or not, by name (`croco_sync_cycles`): its type."""

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; 0 when the series does not exist (yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over every series of `name` whose labels include these."""
        wanted = set(labels.items())
        return sum(value for (sample, found), value in self.samples.items() if sample == name and wanted <= found)

    def label_values(self, name: str, label: str) -> set[str]:
        return {value for (sample, found), _ in self.samples.items() if sample == name
                for key, value in found if key == label}

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def series_names(self) -> set[str]:
        """The names Prometheus stores for the announced families, including labelled ones that have no
        series yet: a counter's `_total`, a histogram's `_bucket`, `_sum` and `_count`."""
        return {family + suffix for family, kind in self.families.items()
                for suffix in SERIES_SUFFIXES.get(kind, ("",))}


def parse(text: str) -> Scrape:
    families = list(text_string_to_metric_families(text))
    return Scrape({(sample.name, frozenset(sample.labels.items())): sample.value
                   for family in families for sample in family.samples},
                  {family.name: family.type for family in families})


async def scrape(http: aiohttp.ClientSession | Client, url: str = "/metrics") -> Scrape:
    """GET `url` with `http` (an aiohttp session, with a full URL, or aiohttp's TestClient) and parse it."""
    async with http.get(url) as response:
        assert response.status == 200 and response.content_type == "text/plain"
        return parse(await response.text())
