"""The compose observability profile: Prometheus scrapes what the stack serves, and every
query of the provisioned Grafana dashboard names a metric the app really exports."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from app.core.config import Settings
from tests.support import PROJECT_ROOT

OBSERVABILITY = PROJECT_ROOT / "deploy/observability"
DASHBOARD = OBSERVABILITY / "grafana/dashboards/app.json"
# Suffixes a family's samples carry, by type (prometheus-client's exposition).
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _yaml(path: str) -> dict[str, Any]:
    data = yaml.safe_load((PROJECT_ROOT / path).read_text())
    assert isinstance(data, dict)
    return data


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert queries
    return queries


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL query reads: identifiers that are not functions, keywords,
    label matchers (`{...}`), grouping labels (`by (...)`), ranges or numbers."""
    query = re.sub(r"\{[^}]*\}", "", query)  # label matchers
    query = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", query)  # grouping labels
    query = re.sub(r"\[[^\]]*\]", "", query)  # range selectors
    names = set()
    for match in IDENTIFIER.finditer(query):
        following = query[match.end() :].lstrip()
        if following.startswith("(") or match.group() in PROMQL_WORDS:
            continue  # a function or an aggregation
        names.add(match.group())
    return names


async def _exported_names(client: AsyncClient) -> set[str]:
    text = (await client.get("/metrics")).text
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ()))
    return names


def test_the_query_parser_finds_metric_names() -> None:
    query = 'histogram_quantile(0.95, sum by (le, route) (rate(x_bucket{status="5xx"}[5m]))) / y'
    assert metric_names(query) == {"x_bucket", "y"}


async def test_every_dashboard_query_names_a_metric_the_app_exports(client: AsyncClient) -> None:
    exported = await _exported_names(client)
    for query in _dashboard_queries():
        names = metric_names(query)
        assert names, query
        assert names <= exported, f"{query}: {sorted(names - exported)} not exported"


def test_every_panel_has_a_query_and_the_provisioned_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    [source] = _yaml("deploy/observability/grafana/provisioning/datasources/prometheus.yaml")[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
    [provider] = _yaml("deploy/observability/grafana/provisioning/dashboards/app.yaml")["providers"]
    grafana = _yaml("docker-compose.yaml")["services"]["grafana"]
    mounted = {volume.split(":")[1] for volume in grafana["volumes"]}
    assert provider["options"]["path"] in mounted


def test_prometheus_scrapes_the_api_and_the_worker_where_they_serve_metrics() -> None:
    compose = _yaml("docker-compose.yaml")["services"]
    config = _yaml("deploy/observability/prometheus.yml")
    targets = {
        job["job_name"]: (job["metrics_path"], job["static_configs"][0]["targets"])
        for job in config["scrape_configs"]
    }
    defaults = Settings(_env_file=None)
    api_port = compose["api"]["ports"][0].rsplit(":", 1)[1]
    assert targets["api"] == ("/metrics", [f"api:{api_port}"])
    assert targets["worker"] == ("/metrics", [f"worker:{defaults.metrics_worker_port}"])
    for name in ("prometheus", "grafana"):
        assert compose[name]["profiles"] == ["observability"]
    mounted = compose["prometheus"]["volumes"][0].split(":")
    assert mounted[:2] == [
        "./deploy/observability/prometheus.yml",
        "/etc/prometheus/prometheus.yml",
    ]


def test_the_production_edge_does_not_serve_metrics() -> None:
    conf = (PROJECT_ROOT / "deploy/nginx/nginx.conf").read_text()
    assert re.search(r"location = /metrics \{\s*return 404;\s*\}", conf)
