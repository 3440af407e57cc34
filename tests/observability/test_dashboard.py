"""The example Grafana dashboard queries the metric names the package exports, and all of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from yalgaar_receiver import Receiver
from yalgaar_receiver.metrics import instrument
from yalgaar_receiver.presence import PresenceTracker

from .test_metrics import KEY, NAMES

DASHBOARD = Path(__file__).parents[2] / "examples" / "grafana" / "yalgaar-dashboard.json"
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def exported() -> set[str]:
    """Every sample name an instrumented receiver with a tracker exports."""
    receiver = Receiver([KEY])
    with PresenceTracker(receiver, sweep_interval=None) as tracker:
        metrics = instrument(receiver, registry=CollectorRegistry(), tracker=tracker)
        try:
            text = metrics.exposition()[0].decode()
        finally:
            metrics.close()
    names = {family.name for family in text_string_to_metric_families(text)}
    return names | {name + suffix for name in names for suffix in SUFFIXES}


def test_the_dashboard_queries_only_exported_metrics_and_every_named_one() -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for query in queries for name in re.findall(r"\byalgaar_[a-z_]+", query)}
    assert used <= exported()
    for name in NAMES:
        assert any(u == name or u.startswith(name + "_") for u in used), name
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
