"""Rebuild astroprob/tasks/data/sersic_hankel.npz, the Fourier table of the Sérsic profile.

The table is deterministic (see the docstring of astroprob/tasks/_sersic_profile.py for
the method and its accuracy). Run from the repository root:

    python benchmarks/build_sersic_table.py          # overwrite the shipped table
    python benchmarks/build_sersic_table.py --check  # recompute and compare, write nothing
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from astroprob.tasks._sersic_profile import TABLE_FILE, write_table

SHIPPED = Path(__file__).resolve().parents[1] / "astroprob" / "tasks" / "data" / TABLE_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped table")
    args = parser.parse_args(argv)
    if not args.check:
        print(f"wrote {write_table(str(SHIPPED))}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = write_table(str(Path(tmp) / TABLE_FILE))
        with np.load(fresh) as new, np.load(SHIPPED) as old:
            diff = float(np.max(np.abs(new["values"] - old["values"])))
    print(f"max |fresh - shipped| = {diff:.2e}")
    return 0 if diff < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
