"""Data efficiency of NPE embeddings on SersicGalaxy: plain CNN, CNN + augmentation, D4 CNN.

For each simulation budget, NPE (spline flow) is trained with these embeddings:

* ``plain``: `astroprob.nn.ConvEmbedding`;
* ``augmented``: the same CNN trained on the full D4 orbit of every simulation
  (8 copies: image rotated by multiples of 90 deg and mirrored, with
  ``(e1, e2)`` transformed as spin 2 and ``(x0, y0)`` as a vector; the prior is
  isotropic, so the copies are draws from the same joint distribution). The
  simulation budget is the same; the number of training images is 8x. (NPE's
  random validation split then holds copies of training simulations, so early
  stopping sees an optimistic validation loss);
* ``equivariant``: `astroprob.nn.EquivariantCNN` for D4 with invariant features
  plus spin-2 and spin-1 outputs (for the ellipticity and the centroid);
* ``equivariant_no_rings``: the same with ``rings=0``, i.e. the invariant
  features pooled from the mean and first moments of the last feature map only,
  without its radial profile (an ablation);
* ``equivariant_symmetric``: the ``equivariant`` embedding with
  ``NPE(symmetry="D4")``: the posterior is the average of the flow over the
  8 turned images (with the parameters turned alike), trained on every turned
  copy in every minibatch, so it turns with the image exactly instead of
  learning to;
* ``equivariant_symmetric_profile``: ``equivariant_symmetric`` whose
  invariant head also reads the input image's mean and its means over 8
  concentric rings (``EquivariantCNN(input_rings=8)``), which keep the
  image's brightness;
* ``plain_symmetric``: the plain CNN with ``NPE(symmetry="D4")``: every
  minibatch embeds the 8 turned images of each simulation (the cost of
  augmentation), and the posterior is their average, exactly equivariant.

Metrics: mean posterior log-probability of the true parameters of ``--test``
held-out simulations (higher is better), with its standard error; per
parameter, the root-mean-square error of the posterior mean and the mean
posterior standard deviation (``--point-samples`` draws per held-out
simulation), both in units of the parameter's standard deviation over the
held-out set, which shows which parameters a model loses; and C2ST
(0.5 is best) between ``--c2st-samples`` posterior draws and as many NUTS draws
of the exact posterior (`SersicGalaxy.sample_reference_posterior`, 2 chains
started at the true parameters), for the first ``--c2st-observations`` held-out
simulations. The NUTS draws are cached in
``benchmarks/results/sersic_nuts_reference_seed<seed>.npz`` with the images
they belong to.

Every row is written to the JSON as soon as it is done; ``--resume`` keeps the
rows of an earlier run with the same settings and runs only the missing ones.

    # Full run (long: use a quiet machine; GPU if available)
    python benchmarks/equivariant_data_efficiency.py
    # Smoke test (a few minutes on 2 cores): tiny budgets, one epoch
    python benchmarks/equivariant_data_efficiency.py --quick

Writes ``benchmarks/results/equivariant_data_efficiency{,_quick}.{json,md}``.
"""

from __future__ import annotations

import argparse
import io
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
from astroprob.inference._checkpoint import write_atomic
from astroprob.nn.groups import DihedralGroup

RESULTS = Path(__file__).parent / "results"
MODELS = (
    "plain",
    "augmented",
    "equivariant",
    "equivariant_no_rings",
    "equivariant_symmetric",
    "equivariant_symmetric_profile",
    "plain_symmetric",
)


def make_embedding(name, stamp):
    if name in ("plain", "augmented", "plain_symmetric"):
        return ap.nn.ConvEmbedding((stamp, stamp), features=32, rngs=nnx.Rngs(0))
    return ap.nn.EquivariantCNN(
        "D4",
        features=32,
        equivariant_outputs=("spin2", "spin2", "spin1", "spin1"),
        rings=0 if name == "equivariant_no_rings" else 4,
        input_rings=8 if name.endswith("_profile") else 0,
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


def nuts_reference(task, test, args):
    """NUTS draws ``(k, c2st_samples, 7)`` for the first k test images, cached on disk."""
    k, n = args.c2st_observations, args.c2st_samples
    theta, x = test[0][:k], test[1][:k]
    path = RESULTS / f"sersic_nuts_reference_seed{args.seed}.npz"
    if path.is_file():
        cached = np.load(path, allow_pickle=False)
        same = cached["x"].shape == x.shape and np.array_equal(cached["x"], x)
        same = same and "warmup" in cached.files and int(cached["warmup"]) == args.nuts_warmup
        if same and cached["samples"].shape[1] >= n:
            return cached["samples"][:, :n]
    draws = []
    for i in range(k):
        start = time.time()
        samples = task.sample_reference_posterior(
            jax.random.fold_in(jax.random.key(args.seed), 1000 + i),
            x[i],
            num_samples=n // 2,
            num_warmup=args.nuts_warmup,
            num_chains=2,
            init_theta=theta[i],
        )
        draws.append(np.asarray(samples))
        print(f"NUTS reference {i}: {time.time() - start:.0f} s", flush=True)
    samples = np.stack(draws)
    blob = io.BytesIO()
    np.savez(blob, samples=samples, x=x, theta=theta, warmup=args.nuts_warmup)
    write_atomic(path, blob.getvalue())
    return samples


def run_one(task, name, budget, train, test, reference, args):
    theta, x = train[0][:budget], train[1][:budget]
    if name == "augmented":
        theta, x = d4_orbit(theta, x)
    # *_symmetric: the same embedding, and the posterior averaged over D4
    # (NPE(symmetry="D4")), so that it turns with the image exactly.
    symmetry = "D4" if "_symmetric" in name else None
    npe = ap.NPE(task, embedding=make_embedding(name, args.stamp), symmetry=symmetry)
    start = time.time()
    options = {"progress_bar": False, "batch_size": args.batch_size}
    if args.max_epochs:
        options["max_epochs"] = args.max_epochs
    npe.fit(jax.random.key(args.seed + 1), theta, x, **options)
    fit_s = time.time() - start
    posterior = npe.posterior(test[1])
    logp = np.asarray(posterior.log_prob(test[0]))
    errors = {}
    if args.point_samples:
        draws = np.asarray(posterior.sample(jax.random.key(args.seed + 3), args.point_samples))
        spread = np.std(test[0], axis=0)  # (7,)
        rmse = np.sqrt(np.mean((draws.mean(axis=1) - test[0]) ** 2, axis=0)) / spread
        width = np.mean(draws.std(axis=1), axis=0) / spread
        names = list(task.parameter_names)
        errors = {
            "rmse_per_parameter": dict(zip(names, rmse.round(4).tolist(), strict=True)),
            "posterior_sd_per_parameter": dict(zip(names, width.round(4).tolist(), strict=True)),
        }
    c2st = []
    if reference is not None:
        k, n = reference.shape[:2]
        draws = np.asarray(npe.posterior(test[1][:k]).sample(jax.random.key(args.seed + 2), n))
        c2st = [ap.diagnostics.c2st(reference[i], draws[i]) for i in range(k)]
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
        "c2st": c2st,
        "c2st_mean": float(np.mean(c2st)) if c2st else None,
        **errors,
    }


def markdown(rows):
    lines = [
        "| simulations | embedding | training images | mean log q(θ_true \\| x) | "
        "C2ST vs NUTS (mean; per observation) | epochs | fit (s) |",
        "|---:|---|---:|---:|---|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["budget"], MODELS.index(r["model"]))):
        c2st = (
            f"{r['c2st_mean']:.3f}; " + " ".join(f"{c:.2f}" for c in r["c2st"])
            if r.get("c2st")
            else ""
        )
        lines.append(
            f"| {r['budget']:,} | {r['model']} | {r['train_images']:,} | "
            f"{r['mean_log_prob']:.3f} ± {r['sem_log_prob']:.3f} | {c2st} | {r['epochs']} | "
            f"{r['fit_s']:.0f} |"
        )
    with_errors = [r for r in rows if r.get("rmse_per_parameter")]
    if with_errors:
        names = list(with_errors[0]["rmse_per_parameter"])
        lines += [
            "",
            "Per parameter: RMS error of the posterior mean / mean posterior standard deviation, "
            "in units of the parameter's spread over the held-out set.",
            "",
            "| simulations | embedding | " + " | ".join(names) + " |",
            "|---:|---|" + "---|" * len(names),
        ]
        for r in sorted(with_errors, key=lambda r: (r["budget"], MODELS.index(r["model"]))):
            cells = [
                f"{r['rmse_per_parameter'][n]:.3f} / {r['posterior_sd_per_parameter'][n]:.3f}"
                for n in names
            ]
            lines.append(f"| {r['budget']:,} | {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[1000, 4000, 10000])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--stamp", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--max-epochs", type=int, default=0, help="0: NPE's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--c2st-observations", type=int, default=5, help="0 skips C2ST")
    parser.add_argument("--c2st-samples", type=int, default=2000)
    parser.add_argument(
        "--point-samples", type=int, default=0, help="draws per test image for per-parameter errors"
    )
    parser.add_argument("--nuts-warmup", type=int, default=500, help="per chain")
    parser.add_argument("--quick", action="store_true", help="tiny settings to test the script")
    parser.add_argument("--resume", action="store_true", help="keep finished rows of --output")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    if args.quick:
        args.budgets, args.test, args.max_epochs, args.batch_size = [100], 50, 1, 50
        args.c2st_observations, args.c2st_samples = 0, 0
        args.point_samples = 20
    suffix = "_quick" if args.quick else ""
    output = Path(args.output or RESULTS / f"equivariant_data_efficiency{suffix}.json")

    task = ap.tasks.SersicGalaxy(stamp_size=args.stamp, pixel_scale=0.15 * u.arcsec)
    key_train, key_test = jax.random.split(jax.random.key(args.seed))
    # Each budget takes the first simulations; `simulate` draws them so that this
    # prefix does not depend on how many are drawn (checked: 4,000 vs 10,000).
    train = [np.asarray(a) for a in task.simulate(key_train, max(args.budgets))]
    test = [np.asarray(a) for a in task.simulate(key_test, args.test)]
    reference = nuts_reference(task, test, args) if args.c2st_observations else None
    # Settings that change a row's numbers; --resume keeps rows only if they match.
    fixed = (
        "nuts_warmup",
        "test",
        "stamp",
        "batch_size",
        "max_epochs",
        "seed",
        "c2st_observations",
        "c2st_samples",
        "point_samples",
    )
    settings = {k: getattr(args, k) for k in fixed}
    rows = []
    if args.resume and output.is_file():
        old = json.loads(output.read_text())
        # Files from before --point-samples existed were made without it (0).
        if {k: old["settings"].get(k, 0 if k == "point_samples" else None) for k in fixed} != (
            settings
        ):
            raise SystemExit(f"--resume: {output} was made with other settings; not resuming")
        rows = old["rows"]
    output.parent.mkdir(parents=True, exist_ok=True)
    for budget in args.budgets:
        for name in args.models:
            if any(r["model"] == name and r["budget"] == budget for r in rows):
                continue
            load_before = os.getloadavg()
            rows.append(run_one(task, name, budget, train, test, reference, args))
            rows[-1]["loadavg_before_after"] = [load_before, os.getloadavg()]
            print(json.dumps(rows[-1]), flush=True)
            write(output, task, settings, rows)
    write(output, task, settings, rows)
    print(markdown(rows))


def write(output, task, settings, rows):
    """JSON and Markdown of the rows so far, each written atomically."""
    result = {
        "task": repr(task),
        "settings": settings,
        "rows": rows,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
    }
    write_atomic(output, (json.dumps(result, indent=2) + "\n").encode())
    write_atomic(output.with_suffix(".md"), markdown(rows).encode())


if __name__ == "__main__":
    main()
