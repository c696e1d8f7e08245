"""Train NPE on two_moons, then prove (or disprove) that its error bars are honest.

Writes a self-contained HTML calibration report (SBC, HPD coverage, TARP,
recovery, z-score vs contraction, an example posterior, predictive checks of
the ten benchmark observations), the same numbers as JSON, and the saved
estimator, which ``astroprob calibrate OUT/run --out report.html`` can check again.

Run:  python examples/calibration_report.py [--num-simulations 10000] [--n 1000]
(a few minutes on a laptop CPU with the defaults).
"""

import argparse
import time
from pathlib import Path

import jax

import astroprob as ap


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("calibration-report"))
    parser.add_argument("--num-simulations", type=int, default=10_000)
    parser.add_argument("--max-epochs", type=int, default=1000)
    parser.add_argument("--n", type=int, default=1000, help="held-out test simulations")
    parser.add_argument("--num-samples", type=int, default=1000, help="posterior samples each")
    parser.add_argument("--num-predictive", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    key_train, key_fit, key_calibrate = jax.random.split(jax.random.key(args.seed), 3)
    task = ap.tasks.get("two_moons")
    theta, x = task.simulate(key_train, args.num_simulations)
    t0 = time.perf_counter()
    npe = ap.NPE(task, "nsf").fit(key_fit, theta, x, max_epochs=args.max_epochs, progress_bar=False)
    print(f"trained on {args.num_simulations} simulations in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    report = ap.calibrate(
        key_calibrate,
        npe,
        task,
        n=args.n,
        num_samples=args.num_samples,
        observations=task.observations,
        num_predictive=args.num_predictive,
    )
    print(f"calibrated in {time.perf_counter() - t0:.1f} s\n")
    print(report)

    args.out.mkdir(parents=True, exist_ok=True)
    npe.save(args.out / "run")
    for path in (report.save(args.out / "report.html"), report.save(args.out / "report.json")):
        print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
