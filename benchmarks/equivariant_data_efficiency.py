"""Data efficiency of NPE embeddings on SersicGalaxy: plain CNN, CNN + augmentation, D4 CNN.

For each simulation budget, NPE (spline flow) is trained with three embeddings:

* ``plain``: `astroprob.nn.ConvEmbedding`;
* ``augmented``: the same CNN trained on the full D4 orbit of every simulation
  (8 copies: image rotated by multiples of 90 deg and mirrored, with
  ``(e1, e2)`` transformed as spin 2 and ``(x0, y0)`` as a vector; the prior is
  isotropic, so the copies are draws from the same joint distribution). The
  simulation budget is the same; the number of training images is 8x. (NPE's
  random validation split then holds copies of training simulations, so early
  stopping sees an optimistic validation loss);
* ``equivariant``: `astroprob.nn.EquivariantCNN` for D4 with invariant features
  plus spin-2 and spin-1 outputs (for the ellipticity and the centroid).

Metric: mean posterior log-probability of the true parameters of ``--test``
held-out simulations (higher is better), with its standard error.

    # Full run (long: use a quiet machine; GPU if available)
    python benchmarks/equivariant_data_efficiency.py --budgets 1000 10000
    # Smoke test (a few minutes on 2 cores): tiny budgets, one epoch
    python benchmarks/equivariant_data_efficiency.py --quick

Writes ``benchmarks/results/equivariant_data_efficiency{,_quick}.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import astroprob as ap
from astroprob.nn.groups import DihedralGroup

RESULTS = Path(__file__).parent / "results"
MODELS = ("plain", "augmented", "equivariant")


def make_embedding(name, stamp):
    if name in ("plain", "augmented"):
        return ap.nn.ConvEmbedding((stamp, stamp), features=32, rngs=nnx.Rngs(0))
    return ap.nn.EquivariantCNN(
        "D4",
        features=32,
        equivariant_outputs=("spin2", "spin2", "spin1", "spin1"),
        rngs=nnx.Rngs(0),
    )


def d4_orbit(theta, x):
    """All 8 D4 images of each simulation, parameters transformed to match."""
    group = DihedralGroup(4)
    spin2 = group.representation("spin2")
    thetas, xs = [], []
    for g in range(group.order):
        t = np.array(theta, copy=True)
        t[:, 3:5] = t[:, 3:5] @ spin2[g].T  # (e1, e2)
        t[:, 5:7] = t[:, 5:7] @ group.matrix(g).T  # (x0, y0)
        thetas.append(t)
        xs.append(np.asarray(group.act_on_images(jnp.asarray(x), g)))
    return np.concatenate(thetas), np.concatenate(xs)


def run_one(task, name, budget, train, test, args):
    theta, x = train[0][:budget], train[1][:budget]
    if name == "augmented":
        theta, x = d4_orbit(theta, x)
    npe = ap.NPE(task, embedding=make_embedding(name, args.stamp))
    start = time.time()
    options = {"progress_bar": False, "batch_size": args.batch_size}
    if args.max_epochs:
        options["max_epochs"] = args.max_epochs
    npe.fit(jax.random.key(args.seed + 1), theta, x, **options)
    fit_s = time.time() - start
    logp = np.asarray(npe.posterior(test[1]).log_prob(test[0]))
    return {
        "model": name,
        "budget": budget,
        "train_images": len(theta),
        "mean_log_prob": float(np.mean(logp)),
        "sem_log_prob": float(np.std(logp) / np.sqrt(len(logp))),
        "epochs": len(npe.history.train_loss),
        "best_epoch": npe.history.best_epoch,
        "compile_s": npe.history.compile_time_s,
        "train_s": npe.history.train_time_s,
        "fit_s": fit_s,
    }


def markdown(rows):
    lines = [
        "| simulations | embedding | training images | mean log q(θ_true | x) | fit (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['budget']} | {r['model']} | {r['train_images']} | "
            f"{r['mean_log_prob']:.3f} ± {r['sem_log_prob']:.3f} | {r['fit_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--stamp", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--max-epochs", type=int, default=0, help="0: NPE's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny settings to test the script")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    if args.quick:
        args.budgets, args.test, args.max_epochs, args.batch_size = [100], 50, 1, 50
    suffix = "_quick" if args.quick else ""
    output = Path(args.output or RESULTS / f"equivariant_data_efficiency{suffix}.json")

    task = ap.tasks.SersicGalaxy(stamp_size=args.stamp, pixel_scale=0.15 * u.arcsec)
    key_train, key_test = jax.random.split(jax.random.key(args.seed))
    train = [np.asarray(a) for a in task.simulate(key_train, max(args.budgets))]
    test = [np.asarray(a) for a in task.simulate(key_test, args.test)]
    rows = []
    for budget in args.budgets:
        for name in args.models:
            rows.append(run_one(task, name, budget, train, test, args))
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "task": repr(task),
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "rows": rows,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    output.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
