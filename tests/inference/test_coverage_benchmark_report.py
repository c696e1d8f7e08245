"""The ensemble-coverage benchmark keeps its finished rows: partial reports are written whole."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ensembles_coverage.py"


def _script():
    spec = importlib.util.spec_from_file_location("ensembles_coverage", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(*, complete):
    row = {
        "task": "two_moons",
        "budget": 300,
        "variant": "npe",
        "coverage": {"max_shortfall": 0.05, "verdict": "overconfident"},
        "training": {"epochs": 3, "train_s": 1.0},
        "c2st": [0.7],
        "log_q": {"mean": -1.0, "sem": 0.1},
    }
    settings = {
        "coverage_sims": 100,
        "observations": 1,
        "members": 2,
        "balance": 100.0,
        "tasks": ["two_moons"],
        "budgets": [300],
    }
    return {
        "date": "2026-11-28T00:00:00+00:00",
        "complete": complete,
        "machine": {"loadavg_start": "0 0 0"},
        "settings": settings,
        "results": [row],
        "ensemble_cost": None,
    }


def test_partial_and_final_reports_are_written_whole(tmp_path):
    script = _script()
    output = tmp_path / "results" / "coverage.json"
    script.write_report(_report(complete=False), output)
    assert json.loads(output.read_text())["complete"] is False
    partial = output.with_suffix(".md").read_text()
    assert "Partial" in partial
    assert "| two_moons | 300 | npe | +0.050 | overconfident | 0.700 |" in partial
    script.write_report(_report(complete=True), output)
    assert json.loads(output.read_text())["complete"] is True
    assert "Partial" not in output.with_suffix(".md").read_text()
    assert sorted(p.name for p in output.parent.iterdir()) == ["coverage.json", "coverage.md"]
