"""deploy/grafana/extproc-dashboard.json queries only metrics and labels we export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from extproc.metrics import Metrics, Observation, SeriesKey

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "extproc-dashboard.json"
METRIC_RE = re.compile(r"\b((?:gen_ai|extproc)_[a-z_]+)\b")
BY_RE = re.compile(r"\bby \(([^)]*)\)")
MATCHER_RE = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"")
PROMQL_WORDS = {"le"}


def exported() -> dict[str, set[str]]:
    """Sample name -> label names, from a registry that has seen one of everything."""
    metrics = Metrics()
    metrics.observe(Observation(
        series=SeriesKey("anthropic_messages", "openai", "m", "n", "b"), status="200",
        error_type="", duration=1.0, time_to_first_token=0.1, time_per_output_token=0.01,
        input_tokens=3, output_tokens=2, cache_read_tokens=1, usage_known=True,
    ))
    metrics.translation_error("stream_failed")
    metrics.processor_failed("request_body")
    metrics.inflight_streams.inc()
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.exposition()[0].decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_query_names_exported_metrics_and_their_labels(dashboard: dict[str, Any]) -> None:
    samples = exported()
    exprs = queries(dashboard)
    assert exprs
    for expr in exprs:
        bare = BY_RE.sub("", re.sub(r"\{[^}]*\}", "", expr))  # label names out of the way
        names = set(METRIC_RE.findall(bare))
        assert names, expr
        unknown = names - samples.keys()
        assert not unknown, f"{expr}: not exported: {unknown}"
        labels = set().union(*(samples[name] for name in names)) | PROMQL_WORDS
        used = {label.strip() for group in BY_RE.findall(expr) for label in group.split(",")}
        used |= set(MATCHER_RE.findall(expr))
        assert used <= labels, f"{expr}: unknown labels {used - labels}"


def test_the_dashboard_shows_what_operators_asked_for(dashboard: dict[str, Any]) -> None:
    exprs = "\n".join(queries(dashboard))
    for needed in (
        "sum by (gen_ai_request_model) (rate(extproc_requests_total",  # requests by model
        'error_type!=""',  # errors
        "rate(gen_ai_client_token_usage_sum",  # tokens per second
        "histogram_quantile(0.95, sum by (le, gen_ai_request_model) "
        "(rate(gen_ai_server_time_to_first_token_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, gen_ai_request_model) "
        "(rate(gen_ai_server_request_duration_seconds_bucket",
        "sum(extproc_inflight_streams)",
    ):
        assert needed in exprs, needed


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_queries_use_the_datasource_and_filter_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "backend", "model"} <= variables
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            if "extproc_requests_total" in target["expr"] or "gen_ai_" in target["expr"]:
                assert '$backend' in target["expr"], panel["title"]
