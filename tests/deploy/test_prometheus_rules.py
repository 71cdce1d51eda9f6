"""The alert rules: valid for promtool, their unit tests pass, and every metric they read exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.catalogue import EXTERNAL_SERIES, ROOT, exported_series, metric_names, promtool, recorded_series

RULES = sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))
RUNBOOKS = ROOT / "deploy/README.md"  # every alert's runbook_url points to a section of it
REQUIRED_ALERTS = {
    "LabelmeshConsumerLagGrowing", "LabelmeshDeadLettersGrowing", "LabelmeshAutoLabelErrorOverTarget",
    "LabelmeshGoldenAccuracyDropping", "LabelmeshAgreementDropping", "LabelmeshNoModelUpdate",
    "LabelmeshServiceDown", "LabelmeshServiceMissing",
}


def _promtool(*args: str, cwd: Path = ROOT) -> str:
    result = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _rules() -> list[dict]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    out = _promtool("check", "rules", *map(str, RULES))
    assert f"SUCCESS: {len(_rules())} rules found" in out


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    tests = sorted((ROOT / "deploy/prometheus/tests").glob("*_test.yml"))
    assert tests
    out = _promtool("test", "rules", *map(str, tests))
    assert "SUCCESS" in out and "FAILED" not in out


def test_every_required_alert_exists_and_is_unit_tested() -> None:
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert REQUIRED_ALERTS <= alerts
    tested = {
        case["alertname"]
        for path in (ROOT / "deploy/prometheus/tests").glob("*_test.yml")
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert REQUIRED_ALERTS <= tested, f"alerts never seen firing in a unit test: {REQUIRED_ALERTS - tested}"


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r.get("alert") or r.get("record"))
def test_rules_read_only_metrics_that_exist(rule: dict) -> None:
    known = exported_series() | recorded_series(RULES) | EXTERNAL_SERIES
    names = metric_names(rule["expr"])
    assert names, f"no metric found in {rule['expr']!r}"
    assert names <= known, f"not exported by any service: {sorted(names - known)}"


def test_alerts_say_how_bad_and_what_happened() -> None:
    for rule in _rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_compose_prometheus_config_is_valid() -> None:
    _promtool("check", "config", "--syntax-only", str(ROOT / "deploy/prometheus/prometheus.yml"))


def _anchors(markdown: str) -> set[str]:
    """The anchors a Markdown renderer (GitHub's rules) gives the headings: lower case, punctuation dropped,
    spaces as hyphens, a repeated one numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_every_alert_links_a_runbook_section_that_exists() -> None:
    anchors = _anchors(RUNBOOKS.read_text())
    for rule in _rules():
        if "alert" in rule:
            url = rule["annotations"].get("runbook_url", "")
            path, _, anchor = url.partition("#")
            assert path == "deploy/README.md", f"{rule['alert']}: runbook_url {url!r}"
            assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in deploy/README.md"


def test_the_anchor_check_can_fail() -> None:
    assert _anchors("# Title\n### LabelmeshServiceDown\n```\n# not a heading\n```\n## Title") == {
        "title", "labelmeshservicedown", "title-1"}


def test_the_metrics_the_readme_wants_are_really_missing() -> None:
    """deploy/README.md lists metrics the rules would like: each is exported by no service (else the note is
    stale, as it once said qc exported no agreement metric), and each metric it names as exported is."""
    text = RUNBOOKS.read_text()
    gaps = text.split("### Metrics the rules would like but the services do not export", 1)[1].split("\n## ", 1)[0]
    wanted = set(re.findall(r"Wanted:\s+`(labelmesh_\w+)", gaps))
    named = set(re.findall(r"`(labelmesh_\w+)", gaps)) - wanted
    assert wanted and named
    assert not wanted & exported_series(), f"exported already: {sorted(wanted & exported_series())}"
    assert named <= exported_series(), f"named as exported but not: {sorted(named - exported_series())}"
