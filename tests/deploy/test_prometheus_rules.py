"""The Prometheus rules in deploy/prometheus/: ``promtool check`` and ``promtool test rules`` (series in, alerts
out), every alert with a severity and a runbook entry in docs/OPERATIONS.md, every required case covered."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "deploy/prometheus").glob("*.rules.yml"))
ALERTS = ROOT / "deploy/prometheus/binance-alerts.rules.yml"
UNIT_TESTS = sorted((ROOT / "tests/deploy/prometheus").glob("*.test.yml"))
OPERATIONS = ROOT / "docs/OPERATIONS.md"


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make install` as root (Debian package prometheus)")
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=300)


def _alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules_and_the_config() -> None:
    checked = _promtool("check", "rules", *RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = _promtool("check", "config", ROOT / "deploy/prometheus/prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_pass() -> None:
    assert UNIT_TESTS
    result = _promtool("test", "rules", *UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_severity_a_runbook_entry_and_a_unit_test() -> None:
    runbook = OPERATIONS.read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", m.group(1).strip().lower()).replace(" ", "-")
        for m in re.finditer(r"^#+ (.+)$", runbook, re.MULTILINE)
    }
    tested = "\n".join(p.read_text() for p in UNIT_TESTS)
    severities = set()
    for rule in _alerts():
        name = rule["alert"]
        severities.add(rule["labels"]["severity"])
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == name.lower() and anchor in headings, f"{name}: no '## {name}' in docs/OPERATIONS.md"
        assert f"alertname: {name}\n" in tested, f"{name} has no promtool unit test"
    assert severities == {"critical", "warning", "info"}


def test_the_issue_s_cases_are_covered() -> None:
    """Freshness, completeness, failed runs and tasks, 418, sustained 429s, database, tail, confirmed holes."""
    by_name = {rule["alert"]: rule for rule in _alerts()}
    required = {
        "BinanceDataStale": "warning",
        "BinanceCompletenessBelowTarget": "warning",
        "BinanceDagRunFailed": "critical",
        "BinanceTaskFailed": "critical",
        "BinanceIPBanned": "critical",
        "BinanceRateLimited": "warning",
        "BinanceDatabaseUnreachable": "critical",
        "BinanceTailDisconnected": "warning",
        "BinanceExchangeHolesConfirmed": "info",
    }
    assert {name: by_name[name]["labels"]["severity"] for name in required} == required
    assert by_name["BinanceRateLimited"]["for"] == "10m"  # sustained, not one 429
