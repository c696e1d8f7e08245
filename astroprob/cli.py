"""The ``astroprob`` command line: a thin shell over the Python API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from astroprob._version import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="astroprob", description=__doc__)
    parser.add_argument("--version", action="version", version=f"astroprob {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train NPE on two_moons and plot a posterior")
    demo.add_argument("--out", type=Path, default=Path("astroprob-demo"), help="output directory")
    demo.add_argument("--num-simulations", type=int, default=10_000)
    demo.add_argument("--num-samples", type=int, default=10_000)
    demo.add_argument("--max-epochs", type=int, default=1000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    cal = sub.add_parser(
        "calibrate", help="calibration report (SBC, HPD coverage, TARP) of a saved estimator"
    )
    cal.add_argument("run_dir", type=Path, help="directory written by NPE.save")
    cal.add_argument("--out", type=Path, default=Path("report.html"), help="HTML report")
    cal.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    cal.add_argument("--num-simulations", type=int, default=1000, help="held-out simulations")
    cal.add_argument("--num-samples", type=int, default=1000, help="posterior samples each")
    cal.add_argument("--alpha", type=float, default=0.05, help="family-wise level")
    cal.add_argument("--seed", type=int, default=0, help="seed of the test simulations")
    cal.add_argument(
        "--observations",
        action="store_true",
        help="also run posterior predictive checks on the task's stored observations",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from astroprob._demo import DemoConfig, run_demo

            run_demo(
                DemoConfig(
                    out=args.out,
                    num_simulations=args.num_simulations,
                    num_samples=args.num_samples,
                    seed=args.seed,
                    max_epochs=args.max_epochs,
                    progress_bar=not args.no_progress,
                )
            )
        elif args.command == "calibrate":
            from astroprob.report._command import CalibrateConfig, run_calibrate

            run_calibrate(
                CalibrateConfig(
                    run_dir=args.run_dir,
                    out=args.out,
                    json=args.json,
                    num_simulations=args.num_simulations,
                    num_samples=args.num_samples,
                    alpha=args.alpha,
                    seed=args.seed,
                    observations=args.observations,
                )
            )
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:
        if args.debug:
            raise
        print(f"astroprob {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
