"""docs/grafana-dashboard.json: valid JSON, a Grafana model with a templated Prometheus datasource, and every
series and label its PromQL uses is one the real service exports (scraped from its /metrics after traffic that
makes it export them all)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from in_process import InProcessServer
from live_server import REPO_ROOT
from prometheus_client.parser import text_string_to_metric_families

from lrr_service.clients import LRRClientSync
from lrr_service.clients.errors import NonFiniteError
from lrr_service.core.weights_csv import format_weights_csv

DASHBOARD = REPO_ROOT / "docs" / "grafana-dashboard.json"

SCRAPE_LABELS = {"instance", "job"}
"""Labels Prometheus adds to every series it scrapes (the target's), not exported by the service."""

PROMQL_WORDS = frozenset(
    re.findall(
        r"\w+",
        """
        sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
        by without on ignoring group_left group_right bool offset and or unless atan2
        abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week day_of_year
        days_in_month delta deriv exp floor histogram_quantile holt_winters hour idelta increase irate
        label_join label_replace ln log2 log10 minute month predict_linear rate resets round scalar sgn sort
        sort_desc sqrt time timestamp vector year avg_over_time min_over_time max_over_time sum_over_time
        count_over_time quantile_over_time stddev_over_time stdvar_over_time last_over_time present_over_time
        inf nan
        """,
    )
)
"""PromQL's aggregation operators, modifiers, keywords and functions: words that are not series names."""

GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
QUOTED = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''
SELECTOR = re.compile(r"\{((?:[^{}\"']|" + QUOTED + r")*)\}")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(" + QUOTED + ")")
STRING = re.compile(QUOTED)
METRIC_NAME = re.compile(r"(?<![\w.$:])([A-Za-z_:][A-Za-z0-9_:]*)(?=\s*[{\[)]|\s|$)")
LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
LABEL_VALUES = re.compile(r"^label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^{}]*\})?\s*,\s*([A-Za-z_]\w*)\s*\)$")

Exported = dict[str, dict[str, set[str]]]
"""Sample name -> its label names -> the values seen."""


# -- the PromQL a dashboard holds -------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """What one PromQL expression uses: series names, label matchers (label, operator, value) of its selectors,
    and the labels of its by/without/on/ignoring clauses."""

    names: frozenset[str]
    matchers: frozenset[tuple[str, str, str]]
    grouping: frozenset[str]

    @property
    def labels(self) -> set[str]:
        return {label for label, _, _ in self.matchers} | set(self.grouping)


def parse_promql(expr: str) -> Query:
    """The series, matchers and grouping labels of `expr` (strings, ranges and function names left out)."""
    matchers = {
        (label, op, json.loads(value)) for label, op, value in MATCHER.findall(" ".join(SELECTOR.findall(expr)))
    }
    grouping: set[str] = set()

    def drop_grouping(match: re.Match[str]) -> str:
        grouping.update(name.strip() for name in match.group(1).split(",") if name.strip())
        return " "

    text = SELECTOR.sub("{}", expr)
    text = STRING.sub('""', text)
    text = GROUPING.sub(drop_grouping, text)
    text = re.sub(r"\[[^\[\]]*\]", "[]", text)  # ranges: [5m], [$__rate_interval]
    names = {name for name in METRIC_NAME.findall(text) if name not in PROMQL_WORDS}
    return Query(frozenset(names), frozenset(matchers), frozenset(grouping))


def test_parse_promql_finds_metrics_and_labels_not_functions() -> None:
    query = parse_promql(
        'histogram_quantile(0.99, sum by (le, route) (rate(x_bucket{instance=~"$i", a="b{c}"}[$__rate_interval])))'
        " / on (route) sum(y) + 1e3 * z_total"
    )
    assert query.names == {"x_bucket", "y", "z_total"}
    assert query.matchers == {("instance", "=~", "$i"), ("a", "=", "b{c}")}
    assert query.grouping == {"le", "route"} and query.labels == {"instance", "a", "le", "route"}


def panels_of(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries_of(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(where, expr, legendFormat) of every panel target."""
    return [
        (f"panel {panel['title']!r} target {target.get('refId')}", target["expr"], target.get("legendFormat", ""))
        for panel in panels_of(dashboard)
        for target in panel.get("targets", [])
    ]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_the_dashboard_is_a_grafana_model_with_a_templated_prometheus_datasource(dashboard: dict[str, Any]) -> None:
    assert [item["name"] for item in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in panels_of(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels_of(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} queries nothing"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
    assert len(queries_of(dashboard)) >= 10


# -- the series the service exports ----------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Sample name -> label names -> values, scraped from a real server after traffic that makes it export every series:
    fit, solve, transform frames (quality), an error, a weights upload, a reset."""
    server = InProcessServer(tmp_path_factory.mktemp("grafana") / "lrr-state").start()
    try:
        rng = np.random.default_rng(3)
        n = 8
        common = rng.standard_normal((2000, 1)) * 5
        recording = rng.standard_normal((2000, n)) + common * rng.uniform(0.5, 1.5, n)
        with LRRClientSync(server.url, "grafana-rig") as client:
            for start in range(0, 1000, 100):
                client.fit(recording[start : start + 100])
            client.fit_transform(recording[1000:1030])
            client.solve()
            for start in range(1000, 2000, 30):
                client.transform(recording[start : start + 30])
            with pytest.raises(NonFiniteError):  # an error reply, counted by its code
                client.fit(np.full((4, n), np.nan))
        weights = np.zeros((3, 3))
        weights[0, 1] = weights[1, 0] = 0.5
        with server.http() as http:
            put = http.put(
                "/streams/grafana-upload/weights?replace=true",
                content=format_weights_csv(weights),
                headers={"Content-Type": "text/csv"},
            )
            assert put.status_code == 200, put.text
            assert http.post("/streams/grafana-upload/reset").status_code == 200
            assert http.get("/streams/no-such-session").status_code == 404
            return _scrape_until_complete(http, deadline=time.monotonic() + 15)
    finally:
        server.stop()


def _scrape_until_complete(http: httpx.Client, deadline: float) -> Exported:
    """Scrape /metrics until the series the dashboard needs are there (some update after the traffic, e.g.
    the per-session quality), or the deadline passes; returns the last scrape."""
    needed = _dashboard_metric_names()
    while True:
        samples = _scrape(http)
        if needed <= samples.keys() or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def _scrape(http: httpx.Client) -> Exported:
    """GET /metrics, parsed by prometheus-client's own parser."""
    response = http.get("/metrics")
    assert response.status_code == 200
    samples: Exported = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = samples.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return samples


def _dashboard_metric_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return {name for _, expr, _ in queries_of(dashboard) for name in parse_promql(expr).names}


def test_every_expr_uses_only_series_labels_and_values_the_service_exports(
    dashboard: dict[str, Any], exported: Exported
) -> None:
    problems = []
    for where, expr, legend in queries_of(dashboard):
        query = parse_promql(expr)
        assert query.names, f"{where}: no metric found in {expr!r}"
        problems += _problems(where, query, set(LEGEND_LABEL.findall(legend)), exported)
    assert not problems, "\n".join(problems)


def _problems(where: str, query: Query, legend_labels: set[str], exported: Exported) -> list[str]:
    """What `query` asks of the scraped series that they do not have: a name, a label, an exact label value."""
    problems = []
    for name in sorted(query.names):
        if name not in exported:
            lrr = sorted(n for n in exported if not n.endswith("_created"))
            problems.append(f"{where}: {name} is not exported (the service exports {lrr})")
            continue
        labels = exported[name]
        for label in sorted((query.labels | legend_labels) - labels.keys() - SCRAPE_LABELS):
            problems.append(f"{where}: {name} has no label {label!r} (it has {sorted(labels)})")
        for label, op, value in sorted(query.matchers):
            if op == "=" and label in labels and value not in labels[label]:
                problems.append(f"{where}: {name} has no {label}={value!r} (it has {sorted(labels[label])})")
    return problems


def test_the_template_variables_query_exported_series(dashboard: dict[str, Any], exported: Exported) -> None:
    variables = [v for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert {v["name"] for v in variables} == {"instance", "key"}
    for variable in variables:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = LABEL_VALUES.match(query)
        assert match, f"variable {variable['name']}: {query!r} is not label_values(series, label)"
        name, selector, label = match.groups()
        where = f"variable {variable['name']}"
        assert not _problems(where, parse_promql(f"{name}{selector or ''}"), {label}, exported)


def test_the_dashboard_covers_every_series_family_the_brief_names(dashboard: dict[str, Any]) -> None:
    used = _dashboard_metric_names()
    for family in (
        "lrr_frames_total",
        "lrr_samples_total",
        "lrr_reply_latency_seconds_bucket",
        "lrr_errors_total",
        "lrr_sessions",
        "lrr_websocket_connections",
        "lrr_solves_total",
        "lrr_solve_duration_seconds_bucket",
        "lrr_session_reduction_db",
    ):
        assert family in used, f"the dashboard does not show {family}"
    stats = {
        value
        for _, expr, _ in queries_of(dashboard)
        for label, op, value in parse_promql(expr).matchers
        if label == "stat" and op == "="
    }
    assert stats == {"median", "worst"}, "per-session median and worst-channel reduction"
