"""Coverage and accuracy of single NPE, a deep ensemble and balanced NPE; ensemble training cost.

For each task and simulation budget the simulations are drawn once (fixed key)
and three estimators are trained on the same (theta, x) with the same network
and training options:

- ``npe``: one neural spline flow (astroprob defaults);
- ``ensemble``: ``ap.NPE(task, ensemble=K)``, K members in one compiled program;
- ``balanced``: ``ap.NPE(task, balance=lambda)`` (Delaunoy et al. 2023);
- ``balanced_ensemble``: both, ``ap.NPE(task, ensemble=K, balance=lambda)``;
- ``bnn``: ``ap.BayesianRegressor`` (heteroscedastic Gaussian regression of θ
  on x with a last-layer Laplace posterior): its predictive is a Gaussian per
  parameter, so it cannot represent multimodal or curved posteriors and, on box
  priors, puts mass outside the prior; it is the Bayesian-network baseline.

Each is scored by its expected-coverage curve of HPD regions
(`astroprob.diagnostics.coverage`, on ``--coverage-sims`` fresh simulations,
HPD regions of the estimator's own density) and by C2ST against the sbibm
reference posteriors of observations 1..``--observations`` where
``ASTROPROB_REFERENCE_DATA`` (or ../shared/data/sbibm_reference_posteriors)
holds them, and by the mean log q(θ | x) of the true parameters of
``--coverage-sims`` further fresh simulations (nats, higher is better), which
needs no reference posterior. ``--tasks sersic_galaxy`` runs the image task
`SersicGalaxy` (``--stamp`` pixels a side, its default prior fitted to COSMOS
galaxies) with a jointly trained `ConvEmbedding` for every variant, the
Bayesian network included. The target of issue 7: wherever the single NPE is
overconfident, the ensemble or balanced variant has coverage >= nominal - 0.02
at every level, at a C2ST cost no larger than 0.03. The image task has no sbibm
reference posterior; its C2ST uses the NUTS posteriors that
``benchmarks/equivariant_data_efficiency.py`` caches
(``benchmarks/results/sersic_nuts_reference_seed<seed>.npz``: images and
draws) when that file exists, and otherwise the log q column takes C2ST's
place.

The ensemble training cost compares K members trained in one program with K
separate single-network fits of the same size (seconds of training and of
compilation, and their ratio), on the first task and budget.

Usage::

    python benchmarks/ensembles_coverage.py            # full run (long: use a quiet machine)
    python benchmarks/ensembles_coverage.py --quick    # smoke test, minutes on a laptop

Writes ``benchmarks/results/ensembles_coverage[_quick].json`` (or ``--output``)
and a Markdown table next to it, after every finished row (``"complete":
false`` until the last), so that a long run that is stopped keeps its rows.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import astroprob as ap
from astroprob.diagnostics.c2st import c2st
from astroprob.diagnostics.coverage import expected_coverage
from astroprob.diagnostics.runners import run_expected_coverage
from astroprob.inference._checkpoint import write_atomic
from astroprob.inference.npe import NPE_TRAINING_DEFAULTS
from astroprob.tasks import reference_posterior_samples

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SCHEMA = "astroprob-benchmark-ensembles-coverage/1"
VARIANTS = ("npe", "ensemble", "balanced", "balanced_ensemble", "bnn")
IMAGE_TASK = "sersic_galaxy"
TOLERANCE = 0.02
"""Coverage may fall this far below nominal (issue 7's target)."""


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["two_moons", "slcp"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[1_000, 10_000])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--balance", type=float, default=100.0)
    parser.add_argument("--coverage-sims", type=int, default=1_000)
    parser.add_argument("--coverage-samples", type=int, default=1_000)
    parser.add_argument("--observations", type=int, default=10)
    parser.add_argument("--c2st-samples", type=int, default=10_000)
    parser.add_argument("--max-epochs", type=int, default=1_000)
    parser.add_argument("--hidden-features", type=int, default=50)
    parser.add_argument("--num-transforms", type=int, default=5)
    parser.add_argument("--stamp", type=int, default=32, help=f"{IMAGE_TASK} stamp side (pixels)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=[v for v in VARIANTS if v != "balanced_ensemble"],
    )
    parser.add_argument("--skip-cost", action="store_true", help="skip the ensemble cost")
    parser.add_argument("--quick", action="store_true", help="tiny settings, to prove it runs")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.budgets = ["two_moons"], [300]
        args.members, args.coverage_sims, args.coverage_samples = 2, 100, 200
        args.observations, args.c2st_samples, args.max_epochs = 1, 500, 3
        args.hidden_features, args.num_transforms = 16, 1
    if args.output is None:
        name = "ensembles_coverage_quick.json" if args.quick else "ensembles_coverage.json"
        args.output = RESULTS / name
    return args


def make_task(name: str, args: argparse.Namespace):
    """The task, and a factory of fresh embedding networks (None for vector data)."""
    if name != IMAGE_TASK:
        return ap.tasks.get(name), None
    task = ap.tasks.SersicGalaxy(stamp_size=args.stamp, pixel_scale=0.15 * u.arcsec)
    shape = (args.stamp, args.stamp)
    return task, lambda: ap.nn.ConvEmbedding(shape, features=32, rngs=nnx.Rngs(args.seed))


def estimator(task, variant: str, args: argparse.Namespace, embedding=None) -> ap.NPE:
    """An untrained NPE of the given variant, all with the same flow (and embedding)."""
    sizes = {"hidden_features": args.hidden_features, "num_transforms": args.num_transforms}
    if embedding is not None:
        sizes["embedding"] = embedding()
    if variant == "ensemble":
        return ap.NPE(task, ensemble=args.members, **sizes)
    if variant == "balanced":
        return ap.NPE(task, balance=args.balance, **sizes)
    if variant == "balanced_ensemble":
        return ap.NPE(task, ensemble=args.members, balance=args.balance, **sizes)
    return ap.NPE(task, **sizes)


def heldout_log_q(log_prob, task, key, args: argparse.Namespace) -> dict:
    """Mean log q(θ | x) of the true θ of fresh simulations, with its standard error.

    Args:
        log_prob: ``log_prob(theta (n, dim), x (n, ...))`` gives ``(n,)``.
    """
    theta, x = task.simulate(key, args.coverage_sims)
    values = np.concatenate(
        [
            np.asarray(log_prob(theta[i : i + 250], x[i : i + 250]))
            for i in range(0, len(theta), 250)
        ]
    )
    return {"mean": float(values.mean()), "sem": float(values.std() / np.sqrt(values.size))}


def fit(npe: ap.NPE, key, theta, x, args: argparse.Namespace) -> dict:
    """Train and time one estimator."""
    t0 = time.perf_counter()
    npe.fit(key, theta, x, max_epochs=args.max_epochs, progress_bar=False)
    wall = time.perf_counter() - t0
    h = npe.history
    epochs = len(h.validation_loss)
    return {
        "wall_s": wall,
        "train_s": h.train_time_s,
        "compile_s": h.compile_time_s,
        "epochs": epochs,
        "best_validation_loss": h.best_validation_loss,
        "member_epochs": None if h.members is None else [len(m.validation_loss) for m in h.members],
    }


def _coverage_summary(result) -> dict:
    """A `CoverageResult` as JSON, with the worst shortfall below nominal."""
    shortfall = float(np.max(result.levels - result.coverage))
    return {
        "levels": result.levels.tolist(),
        "coverage": result.coverage.tolist(),
        "max_shortfall": shortfall,
        "area": result.area,
        "verdict": result.verdict,
        "p_value": result.p_value,
        "meets_target": shortfall <= TOLERANCE,
    }


def coverage(npe: ap.NPE, task, key, args: argparse.Namespace) -> dict:
    """Expected coverage of the estimator's HPD regions; the worst shortfall below nominal."""
    result = run_expected_coverage(
        key, npe, task, n=args.coverage_sims, num_samples=args.coverage_samples
    )
    return _coverage_summary(result)


def c2st_scores(draw, task, key, args: argparse.Namespace) -> list[float] | None:
    """C2ST against the sbibm reference posterior for those of observations 1..n that have one.

    Args:
        draw: ``draw(key, observation, n)`` returns ``(n, dim)`` posterior samples.

    Returns None when no observation has reference samples.
    """
    if task.name == IMAGE_TASK:
        return nuts_c2st_scores(draw, key, args)
    scores = []
    for i in range(1, args.observations + 1):
        try:
            reference = reference_posterior_samples(task.name, i)
        except (FileNotFoundError, ValueError):
            continue
        n = min(args.c2st_samples, len(reference))
        samples = draw(jax.random.fold_in(key, i), task.observation(i), n)
        scores.append(c2st(reference[:n], np.asarray(samples)))
    return scores or None


def nuts_c2st_scores(draw, key, args: argparse.Namespace) -> list[float] | None:
    """C2ST against cached NUTS posteriors of SersicGalaxy images (see the module docstring)."""
    path = Path(__file__).parent / "results" / f"sersic_nuts_reference_seed{args.seed}.npz"
    if not path.is_file():
        return None
    cached = np.load(path, allow_pickle=False)
    if cached["x"].shape[1:] != (args.stamp, args.stamp):
        return None
    scores = []
    for i, (image, reference) in enumerate(
        zip(cached["x"][: args.observations], cached["samples"], strict=False)
    ):
        n = min(args.c2st_samples, len(reference))
        samples = draw(jax.random.fold_in(key, i + 1), image, n)
        scores.append(c2st(reference[:n], np.asarray(samples)))
    return scores


def ensemble_cost(task, theta, x, args: argparse.Namespace, embedding=None) -> dict:
    """K members in one program against K separate fits of one network."""
    key = jax.random.key(args.seed + 100)
    together = fit(estimator(task, "ensemble", args, embedding), key, theta, x, args)
    separate = [
        fit(estimator(task, "npe", args, embedding), jax.random.fold_in(key, k), theta, x, args)
        for k in range(args.members)
    ]
    total = {name: sum(s[name] for s in separate) for name in ("wall_s", "train_s", "compile_s")}
    return {
        "members": args.members,
        "one_program": together,
        "separate_runs": separate,
        "separate_total": total,
        "ratio_wall": together["wall_s"] / total["wall_s"],
        "ratio_train": together["train_s"] / total["train_s"],
    }


class _GaussianPredictive:
    """A `BayesianRegressor` seen as a posterior estimator: sample and log_prob by batch."""

    def __init__(self, regressor: ap.BayesianRegressor):
        self.regressor = regressor

    def samples_and_log_prob(self, key, x, num_samples: int):
        pred = self.regressor.predict(x)
        samples = self.regressor.sample(key, x, num_samples)
        mean, std = pred.mean[:, None], pred.std[:, None]

        def log_prob(theta):
            z = (np.asarray(theta) - mean) / std
            return np.sum(-0.5 * z**2 - np.log(std) - 0.5 * np.log(2 * np.pi), axis=-1)

        return samples, log_prob

    def log_prob(self, theta, x):
        """Log density of the Gaussian predictive of each ``x`` at its ``theta``, ``(n,)``."""
        pred = self.regressor.predict(np.asarray(x))
        z = (np.asarray(theta) - pred.mean) / pred.std
        return np.sum(-0.5 * z**2 - np.log(pred.std) - 0.5 * np.log(2 * np.pi), axis=-1)


def fit_bnn(
    task, key, theta, x, args: argparse.Namespace, embedding=None
) -> tuple[ap.BayesianRegressor, dict]:
    """Train and time the Bayesian regressor (same loop, NPE's batch size and weight decay)."""
    regressor = ap.BayesianRegressor(
        list(task.parameter_names),
        hidden=args.hidden_features,
        embedding=None if embedding is None else embedding(),
    )
    t0 = time.perf_counter()
    regressor.fit(
        key,
        x,
        theta,
        max_epochs=args.max_epochs,
        progress_bar=False,
        **NPE_TRAINING_DEFAULTS,
    )
    h = regressor.history
    return regressor, {
        "wall_s": time.perf_counter() - t0,
        "train_s": h.train_time_s,
        "compile_s": h.compile_time_s,
        "epochs": len(h.validation_loss),
        "best_validation_loss": h.best_validation_loss,
        "member_epochs": None,
    }


def bnn_coverage(regressor: ap.BayesianRegressor, task, key, args: argparse.Namespace) -> dict:
    """Expected coverage of the Gaussian predictive's HPD regions on fresh simulations."""
    k_sim, k_draw = jax.random.split(key)
    theta, x = task.simulate(k_sim, args.coverage_sims)
    samples, log_prob = _GaussianPredictive(regressor).samples_and_log_prob(
        k_draw, np.asarray(x), args.coverage_samples
    )
    result = expected_coverage(samples, np.asarray(theta), log_prob=log_prob)
    return _coverage_summary(result)


def run(args: argparse.Namespace, on_row: Callable[[dict], None] | None = None) -> dict:
    """The whole benchmark, as a JSON-ready dict.

    ``on_row``, if given, is called after every finished row with the report
    so far (``"complete": False``), so that a long run that is stopped keeps
    its finished rows.
    """
    started, load_start = _dt.datetime.now(_dt.UTC), _loadavg()
    results = []
    cost = None

    def report(*, complete: bool) -> dict:
        return {
            "schema": SCHEMA,
            "date": started.isoformat(timespec="seconds"),
            "duration_s": (_dt.datetime.now(_dt.UTC) - started).total_seconds(),
            "complete": complete,
            "machine": {
                "platform": platform.platform(),
                "devices": [str(d) for d in jax.devices()],
                "cpu_count": os.cpu_count(),
                "loadavg_start": load_start,
            },
            "versions": {"astroprob": ap.__version__, "jax": jax.__version__},
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "results": list(results),
            "ensemble_cost": cost,
        }

    for task_name in args.tasks:
        task, embedding = make_task(task_name, args)
        for budget in args.budgets:
            key = jax.random.fold_in(jax.random.key(args.seed), budget)
            k_sim, k_fit, k_cov, k_c2st = jax.random.split(key, 4)
            k_logq = jax.random.fold_in(key, 1_000_003)  # fold_in(key, i) is split(key, n)[i]
            theta, x = task.simulate(k_sim, budget)
            if cost is None and not args.skip_cost:
                cost = ensemble_cost(task, theta, x, args, embedding)
            for variant in args.variants:
                row = {"task": task_name, "budget": budget, "variant": variant}
                if variant == "bnn":
                    regressor, row["training"] = fit_bnn(task, k_fit, theta, x, args, embedding)
                    row["coverage"] = bnn_coverage(regressor, task, k_cov, args)
                    row["log_q"] = heldout_log_q(
                        lambda t, d, r=regressor: _GaussianPredictive(r).log_prob(t, d),
                        task,
                        k_logq,
                        args,
                    )
                    row["c2st"] = c2st_scores(
                        lambda k, obs, n, r=regressor: r.sample(k, np.asarray(obs)[None], n)[0],
                        task,
                        k_c2st,
                        args,
                    )
                else:
                    npe = estimator(task, variant, args, embedding)
                    row["training"] = fit(npe, k_fit, theta, x, args)
                    row["coverage"] = coverage(npe, task, k_cov, args)
                    row["log_q"] = heldout_log_q(
                        lambda t, d, e=npe: e.posterior(d).log_prob(jnp.asarray(t)[:, None])[:, 0],
                        task,
                        k_logq,
                        args,
                    )
                    row["c2st"] = c2st_scores(
                        lambda k, obs, n, e=npe: e.posterior(obs).sample(k, n), task, k_c2st, args
                    )
                results.append(row)
                print(
                    f"{task_name:>10} {budget:>6} {variant:>9}: shortfall "
                    f"{row['coverage']['max_shortfall']:+.3f} {row['coverage']['verdict']}, "
                    f"c2st {_mean(row['c2st'])}, log q {row['log_q']['mean']:.3f}",
                    flush=True,
                )
                if on_row is not None:
                    on_row(report(complete=False))
    return report(complete=True)


def markdown(report: dict) -> str:
    """The results as Markdown tables."""
    s = report["settings"]
    lines = [
        f"Coverage shortfall = max over levels of (nominal - empirical coverage) on "
        f"{s['coverage_sims']} simulations (target <= {TOLERANCE}); C2ST: mean over up to "
        f"{s['observations']} reference observations (sbibm reference samples; for "
        "sersic_galaxy the cached NUTS posteriors of 5 images, 2,000 draws each). "
        f"Ensemble K = {s['members']}, "
        f"balanced lambda = {s['balance']}. {report['date']}, load average at start "
        f"{report['machine']['loadavg_start']}.",
        "",
        "| task | budget | variant | shortfall | verdict | C2ST | log q ± s.e. | epochs "
        "| train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if report.get("complete") is False:
        lines[0] += " Partial: the run was still going (or was stopped) after these rows."
    for r in report["results"]:
        cov, tr = r["coverage"], r["training"]
        logq = r.get("log_q")
        logq = "n/a" if logq is None else f"{logq['mean']:.3f} ± {logq['sem']:.3f}"
        lines.append(
            f"| {r['task']} | {r['budget']} | {r['variant']} | {cov['max_shortfall']:+.3f} | "
            f"{cov['verdict']} | {_mean(r['c2st'])} | {logq} | {tr['epochs']} | "
            f"{tr['train_s']:.1f} |"
        )
    c = report["ensemble_cost"]
    if c:
        lines += [
            "",
            f"Ensemble training cost, K = {c['members']} ({s['tasks'][0]}, {s['budgets'][0]} "
            "simulations):",
            "",
            "| | wall s | train s | compile s |",
            "|---|---|---|---|",
            f"| one program | {c['one_program']['wall_s']:.1f} | "
            f"{c['one_program']['train_s']:.1f} | {c['one_program']['compile_s']:.1f} |",
            f"| {c['members']} separate runs | {c['separate_total']['wall_s']:.1f} | "
            f"{c['separate_total']['train_s']:.1f} | {c['separate_total']['compile_s']:.1f} |",
            f"| ratio | {c['ratio_wall']:.2f} | {c['ratio_train']:.2f} | |",
        ]
    return "\n".join(lines) + "\n"


def _mean(scores: list[float] | None) -> str:
    return "n/a" if not scores else f"{float(np.mean(scores)):.3f}"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def write_report(report: dict, output: Path) -> None:
    """Write ``output`` (JSON) and its ``.md`` twin, each replaced atomically."""
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, (json.dumps(report, indent=2) + "\n").encode())
    write_atomic(output.with_suffix(".md"), markdown(report).encode())


def main() -> None:
    """Run, writing JSON and Markdown after every finished row and at the end."""
    args = parse_args()
    report = run(args, on_row=lambda partial: write_report(partial, args.output))
    report["machine"]["loadavg_end"] = _loadavg()
    write_report(report, args.output)
    print(markdown(report))
    print(f"wrote {args.output} and {args.output.with_suffix('.md')}")


if __name__ == "__main__":
    main()
