"""The ``astroprob`` command line: a thin shell over the Python API.

``astroprob demo`` runs the galaxy-image demo; ``astroprob train CONFIG.toml
--out RUN_DIR [--resume]`` simulates and trains a run (`astroprob.io.train_run`);
``astroprob infer RUN_DIR IMAGE.fits... --out catalog.fits [--positions
table.ecsv]`` writes a posterior catalog (`astroprob.io.infer_images`);
``astroprob calibrate RUN_DIR --out report.html`` writes a calibration report.
Errors are one line on stderr (``--debug`` shows the traceback) and a non-zero
exit status.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from astroprob._version import __version__

ERRORS = (ValueError, TypeError, OSError, RuntimeError, ImportError, FloatingPointError)
"""Exceptions reported as one line; anything else is a bug and shows its traceback."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astroprob", description="Amortized, calibrated simulation-based inference."
    )
    parser.add_argument("--version", action="version", version=f"astroprob {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    # --debug is accepted after the command, too (SUPPRESS: absent there, it keeps the
    # value given before the command).
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )

    demo = sub.add_parser(
        "demo",
        parents=[debug],
        help="simulate Sérsic galaxies, train NPE, write a catalog, plot and report",
    )
    demo.add_argument("--out", type=Path, default=Path("astroprob-demo"), help="output directory")
    demo.add_argument("--num-simulations", type=int, default=None, help="training simulations")
    demo.add_argument("--max-epochs", type=int, default=None, help="limit on training epochs")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # for tests

    train = sub.add_parser(
        "train", parents=[debug], help="simulate and train a run from a TOML config"
    )
    train.add_argument("config", type=Path, help="TOML run config")
    train.add_argument("--out", type=Path, required=True, help="run directory")
    train.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its checkpoint"
    )
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    infer = sub.add_parser(
        "infer", parents=[debug], help="posterior catalog of FITS image stamps or light curves"
    )
    infer.add_argument("run_dir", type=Path, help="run directory from astroprob train")
    infer.add_argument(
        "inputs", type=Path, nargs="+", help="FITS images, or SNANA light curves (HEAD.FITS, .dat)"
    )
    infer.add_argument("--out", type=Path, required=True, help="catalog (.fits or .ecsv)")
    infer.add_argument(
        "--positions", type=Path, default=None, help="table with ra, dec [, id, image] columns"
    )
    infer.add_argument("--hdu", type=int, default=0, help="image HDU of every input")
    infer.add_argument("--num-samples", type=int, default=1000, help="posterior samples each")
    infer.add_argument("--samples", type=Path, default=None, help="also write samples (FITS)")
    infer.add_argument("--seed", type=int, default=0, help="seed of the posterior samples")
    infer.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    cal = sub.add_parser(
        "calibrate",
        parents=[debug],
        help="calibration report (SBC, HPD coverage, TARP) of a saved estimator",
    )
    cal.add_argument("run_dir", type=Path, help="run directory (astroprob train or NPE.save)")
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


def _run(args: argparse.Namespace) -> None:
    if args.command == "demo":
        from astroprob._demo import DemoConfig, run_demo

        config = DemoConfig.tiny(args.out) if args.tiny else DemoConfig(out=args.out)
        overrides = {"num_simulations": args.num_simulations, "max_epochs": args.max_epochs}
        config = config.replace(
            seed=args.seed,
            progress_bar=not args.no_progress,
            **{k: v for k, v in overrides.items() if v is not None},
        )
        run_demo(config)
    elif args.command == "train":
        from astroprob.io.runs import train_run

        train_run(args.config, args.out, resume=args.resume, progress_bar=not args.no_progress)
    elif args.command == "infer":
        from astroprob.io.runs import infer_catalog

        infer_catalog(
            args.run_dir,
            args.inputs,
            args.out,
            positions=args.positions,
            hdu=args.hdu,
            num_samples=args.num_samples,
            seed=args.seed,
            samples_out=args.samples,
            overwrite=args.overwrite,
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


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 success, 1 error, 130 interrupted)."""
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except ERRORS as err:
        if args.debug:
            raise
        message = " ".join(str(err).split())  # one line, whatever the exception held
        print(f"astroprob {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"astroprob {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
