"""examples/sersic_npe.py runs end to end with tiny settings."""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sersic_npe.py"


@pytest.mark.slow
def test_sersic_example_runs(monkeypatch, capsys):
    args = [
        "--num-simulations",
        "300",
        "--max-epochs",
        "2",
        "--num-test",
        "5",
        "--num-samples",
        "50",
    ]
    monkeypatch.setattr(sys, "argv", [EXAMPLE.name, *args])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "trained on 300 simulations" in out
    assert "68% coverage" in out
