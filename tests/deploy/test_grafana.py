"""The Grafana dashboard: every query parses (promtool) and reads metrics the services or the rules produce."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from tests.deploy.catalogue import EXTERNAL_SERIES, ROOT, exported_series, metric_names, promtool, recorded_series

DASHBOARD = ROOT / "deploy/grafana/dashboards/labelmesh.json"
RULES = sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))
# What the dashboard must show (the list), found in panel titles.
REQUIRED_PANELS = ["throughput per stage", "lag", "tier", "human-touch rate", "cost per", "agreement",
                   "golden accuracy", "model versions"]
# Grafana's built-in and the dashboard's own variables, replaced by something PromQL accepts.
VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$project": ".*",
             "$cost_per_human_label": "0.1"}


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _queries() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in _dashboard()["panels"] for target in panel.get("targets", [])]


def _substitute(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    assert "$" not in expr, f"unknown dashboard variable in {expr!r}"
    return expr


def test_dashboard_covers_what_operators_asked_for() -> None:
    titles = " | ".join(p["title"].lower() for p in _dashboard()["panels"])
    missing = [want for want in REQUIRED_PANELS if want not in titles]
    assert not missing, f"no panel for {missing}"


def test_dashboard_variables_are_the_ones_the_queries_use() -> None:
    declared = {f"${v['name']}" for v in _dashboard()["templating"]["list"]}
    used = {m for _, expr in _queries() for m in re.findall(r"\$\w+", expr) if not m.startswith("$__")}
    assert used <= declared
    datasource_uids = {json.dumps(p.get("datasource")) for p in _dashboard()["panels"] if p["type"] != "row"}
    assert datasource_uids == {json.dumps({"type": "prometheus", "uid": "${datasource}"})}


def test_every_query_reads_metrics_that_exist() -> None:
    known = exported_series() | recorded_series(RULES) | EXTERNAL_SERIES
    for title, expr in _queries():
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        assert names <= known, f"{title}: not exported by any service: {sorted(names - known)}"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool has no offline query parser; a recording rule per query makes `check rules` parse each one.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": _substitute(expr)} for i, (_, expr) in enumerate(_queries())
    ]}]}
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _dashboard()["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]
        assert g["x"] + g["w"] <= 24


def test_compose_provisions_this_dashboard_from_this_datasource() -> None:
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/labelmesh.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
