"""Reading `/metrics` as Prometheus would: over HTTP, parsed by prometheus-client's own text parser."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.web.conftest import Client

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    """One scrape's samples, by sample name (`croco_sync_cycles_total`, `..._bucket`) and label set."""

    samples: Mapping[tuple[str, Labels], float]

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


def parse(text: str) -> Scrape:
    return Scrape({(sample.name, frozenset(sample.labels.items())): sample.value
                   for family in text_string_to_metric_families(text) for sample in family.samples})


async def scrape(http: aiohttp.ClientSession | Client, url: str = "/metrics") -> Scrape:
    """GET `url` with `http` (an aiohttp session, with a full URL, or aiohttp's TestClient) and parse it."""
    async with http.get(url) as response:
        assert response.status == 200 and response.content_type == "text/plain"
        return parse(await response.text())
