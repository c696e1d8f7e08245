"""The sbi comparison trains astroprob with NPE's own defaults, spelled out in the script."""

import ast
from pathlib import Path

from astroprob.inference.npe import NPE_TRAINING_DEFAULTS

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "npe_vs_sbi.py"


def test_npe_vs_sbi_uses_npe_training_defaults():
    tree = ast.parse(SCRIPT.read_text())
    values = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "ASTROPROB_DEFAULTS" for t in node.targets)
    ]
    assert values == [NPE_TRAINING_DEFAULTS]
