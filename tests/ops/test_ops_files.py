"""ops/: the Prometheus alert rules pass promtool's checks and unit tests; the Grafana dashboard
loads, its queries parse, and it only uses series the server exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.conftest import require_service
from tests.ops.test_metrics import documented_series

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "ops"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        require_service("promtool", FileNotFoundError("apt-get install -y prometheus"))
    assert path is not None
    return path


def run(*args: str, cwd: Path = OPS / "prometheus") -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_alert_rules_check_and_unit_tests() -> None:
    """`promtool check rules` and `promtool test rules` pass (the spec's alerts fire as meant)."""
    tool = promtool()
    assert "SUCCESS: 8 rules found" in run(tool, "check", "rules", "alerts.yml")
    run(tool, "test", "rules", "alerts.test.yml")
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
    tested = yaml.safe_load((OPS / "prometheus" / "alerts.test.yml").read_text())["tests"]
    names = {r["alert"] for r in rules}
    covered = {t["alertname"] for case in tested for t in case["alert_rule_test"]}
    assert names == covered, f"alerts without a unit test: {names - covered}"


def test_grafana_dashboard_loads_and_its_queries_parse(tmp_path: Path) -> None:
    """The dashboard is valid JSON with unique panel ids; every query is valid PromQL over
    series the server exports (checked by promtool as recording rules)."""
    dash = json.loads((OPS / "grafana" / "folio-stream.json").read_text())
    assert dash["uid"] == "folio-stream" and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs and all(exprs)
    known = documented_series()
    for expr in exprs:
        for name in re.findall(r"\b(folio_[a-z_]+)", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in known or base in known, f"{name} is not a series the server exports"
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:q{i}",
                        "expr": e.replace("$job", ".*").replace("$instance", ".*"),
                    }
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    (tmp_path / "dashboard.rules.yml").write_text(yaml.safe_dump(rules))
    run(promtool(), "check", "rules", "dashboard.rules.yml", cwd=tmp_path)
