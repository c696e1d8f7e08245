"""Supernova typing: amortized p(type | light curve) on simulations, applied to PS1-MDS.

Simulates griz light curves of the four types of `SupernovaLightCurves` (Ia,
Ibc, II-P, II-L; equal prior probabilities; one common Villar form, so the
type enters through the per-type priors) on a Pan-STARRS1 Medium Deep-like
schedule, trains `astroprob.inference.ModelClassifier` with the
`LightCurveEncoder` embedding, and measures on held-out simulations (never used
for training, early stopping or temperature fitting):

- accuracy, ECE, MCE, NLL, Brier score and the calibration verdict of
  `astroprob.diagnostics.classification_calibration`, for the raw network
  (T = 1), after temperature scaling (fitted on the validation split), and for
  the last-layer Laplace `BayesianClassifier` made from the same network;
- the confusion matrix;
- the type probabilities of the ten real PS1-MDS light curves in
  ``../shared/data/ps1mds_superraenn_examples/`` (five have spectroscopic
  types; SLSN and SN IIn are not among the simulated types). Five objects are a
  smoke test of the real-data path, not a measurement of accuracy.

Simulations and real light curves are put on the same footing: times relative
to the brightest observed epoch, points within -50..150 days of it.

Usage::

    python benchmarks/supernova_typing.py                 # moderate settings
    python benchmarks/supernova_typing.py --quick         # smoke test, results/*_quick.*

Writes ``benchmarks/results/supernova_typing[_quick].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

import astroprob as ap
from astroprob.inference import BayesianClassifier, ModelClassifier
from astroprob.io.lightcurves import read_ps1mds_metadata, read_snana_text
from astroprob.tasks.supernova import SN_TYPES, SupernovaLightCurves, Survey

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
PS1 = REPO.parent / "shared" / "data" / "ps1mds_superraenn_examples"
BANDS = ("g", "r", "i", "z")
WINDOW = (-50.0, 150.0)  # days around the brightest epoch
MAX_POINTS = 40  # per band after windowing (the real light curves have at most 32)
ZERO_POINT = 22.5  # flux unit: a 22.5 mag source (FLUXCAL / 100)


def ps1_like_survey() -> Survey:
    """A PS1-MDS-like schedule over a window wide enough to recentre on the brightest point."""
    return Survey(
        bands=BANDS,
        max_points=60,  # 5.3-day slots over 320 days
        time_range=(-100.0, 220.0),
        season_length=(150.0, 200.0),
        observe_probability=(0.4, 0.9),
        band_missing_probability=0.02,
        limiting_mag=(22.5, 23.5),
        calibration_error=0.01,
        zero_point=ZERO_POINT,
    )


def recentre_on_brightest(x: np.ndarray) -> np.ndarray:
    """Times relative to the brightest observed point; keep points within `WINDOW`.

    ``x``: ``(n, bands, points, 4)`` simulated observations. Returns
    ``(n, bands, MAX_POINTS, 4)`` in the layout of `LightCurves.to_observation`.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    time, flux, err, mask = x[..., 0], x[..., 1], x[..., 2], x[..., 3] > 0.5
    brightest = np.argmax(np.where(mask, flux, -np.inf).reshape(n, -1), axis=1)
    t_ref = time.reshape(n, -1)[np.arange(n), brightest]
    rel = time - t_ref[:, None, None]
    keep = mask & (rel >= WINDOW[0]) & (rel <= WINDOW[1])
    if keep.sum(axis=2).max() > MAX_POINTS:
        raise ValueError(f"more than {MAX_POINTS} points per band inside {WINDOW}")
    order = np.argsort(np.where(keep, rel, np.inf), axis=2, kind="stable")
    channels = np.stack([rel, flux, err, keep.astype(np.float64)], axis=-1)
    channels = np.take_along_axis(channels, order[..., None], axis=2)
    packed = np.take_along_axis(keep, order, axis=2)
    channels = np.where(packed[..., None], channels, 0.0)
    return channels[:, :, :MAX_POINTS].astype(np.float32)


def simulate(key: jax.Array, task: SupernovaLightCurves, n: int, chunk: int = 5000):
    """Types and recentred light curves, simulated in chunks to bound memory."""
    types, xs = [], []
    for i, k in enumerate(jax.random.split(key, -(-n // chunk))):
        m = min(chunk, n - i * chunk)
        t, _, x = task.simulate_typed(k, m)
        types.append(np.asarray(t))
        xs.append(recentre_on_brightest(np.asarray(x)))
    return np.concatenate(types).astype(np.int32), np.concatenate(xs)


def real_observations() -> tuple[np.ndarray, list[str], list[str]]:
    """PS1-MDS light curves in the benchmark's layout, with ids and spectroscopic types."""
    lcs = read_snana_text(PS1 / "example_LCs")
    x = lcs.to_observation(
        BANDS,
        MAX_POINTS,
        lcs.brightest_time(BANDS),
        zero_point=ZERO_POINT,
        time_window=WINDOW,
        drop_outside=True,
    )
    meta = read_ps1mds_metadata(PS1 / "example_meta_table.dat")
    types = {str(row["SN"]): str(row["type"]) or "-" for row in meta}
    ids = list(lcs.ids)
    return x, ids, [types.get(i, "-") for i in ids]


def metrics(key: jax.Array, probs: np.ndarray, labels: np.ndarray) -> dict:
    """Calibration diagnostics and the confusion matrix of held-out predictions."""
    result = ap.diagnostics.classification_calibration(key, probs, labels, num_resamples=1000)
    k = probs.shape[1]
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (labels, probs.argmax(axis=1)), 1)
    out = result.to_dict()
    out["confusion"] = confusion.tolist()  # rows: true type, columns: predicted type
    return out


def run(args: argparse.Namespace) -> dict:
    """Simulate, train, evaluate; returns the results dict."""
    survey = ps1_like_survey()
    task = SupernovaLightCurves(list(SN_TYPES), survey=survey)
    t0 = time.perf_counter()
    labels, x = simulate(jax.random.key(args.seed), task, args.n_train + args.n_test)
    simulate_s = time.perf_counter() - t0
    x_train, y_train = x[: args.n_train], labels[: args.n_train]
    x_test, y_test = x[args.n_train :], labels[args.n_train :]

    encoder = ap.nn.LightCurveEncoder(
        len(BANDS), features=args.features, hidden=args.hidden, num_heads=4, rngs=nnx.Rngs(0)
    )
    clf = ModelClassifier(SN_TYPES, embedding=encoder, hidden=args.hidden, depth=2)
    t0 = time.perf_counter()
    clf.fit(
        jax.random.key(args.seed + 1),
        x_train,
        y_train,
        class_prior=task.metadata["type_probabilities"],
        max_epochs=args.epochs,
        patience=args.patience,
        batch_size=256,
        learning_rate=args.learning_rate,
        progress_bar=args.progress,
    )
    train_s = time.perf_counter() - t0
    temperature = clf.temperature

    key = jax.random.key(args.seed + 2)
    scaled = metrics(key, clf.predict_proba(x_test), y_test)
    clf.set_temperature(1.0)
    raw = metrics(key, clf.predict_proba(x_test), y_test)
    t0 = time.perf_counter()
    # The Laplace posterior uses the training inputs only (train split plus validation split,
    # both already seen in training); the test set stays untouched.
    bayes = BayesianClassifier.from_classifier(
        jax.random.key(args.seed + 3), clf, x_train, num_draws=200
    )
    laplace_s = time.perf_counter() - t0
    laplace = metrics(key, bayes.predict_proba(x_test), y_test)
    clf.set_temperature(temperature)

    x_real, ids, spec_types = real_observations()
    real_probs = clf.predict_proba(x_real)
    real_bayes = bayes.predict_proba(x_real)
    real_epistemic = bayes.uncertainty(x_real).epistemic
    objects = [
        {
            "id": i,
            "spectroscopic_type": s,
            "points": int(x_real[j, :, :, 3].sum()),
            "probabilities": dict(zip(SN_TYPES, map(float, real_probs[j]), strict=True)),
            "probabilities_laplace": dict(zip(SN_TYPES, map(float, real_bayes[j]), strict=True)),
            "epistemic_nats": float(real_epistemic[j]),
        }
        for j, (i, s) in enumerate(zip(ids, spec_types, strict=True))
    ]
    return {
        "benchmark": "supernova_typing",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_at_end": os.getloadavg(),
            "jax_backend": jax.default_backend(),
        },
        "settings": {
            "types": list(SN_TYPES),
            "form": task.form,
            "bands": list(BANDS),
            "window_days": list(WINDOW),
            "max_points": MAX_POINTS,
            "zero_point": ZERO_POINT,
            "n_train": args.n_train,
            "n_test": args.n_test,
            "validation_fraction": 0.1,
            "epochs_max": args.epochs,
            "patience": args.patience,
            "learning_rate": args.learning_rate,
            "encoder": {"features": args.features, "hidden": args.hidden, "num_heads": 4},
            "seed": args.seed,
        },
        "timing_s": {"simulate": simulate_s, "train": train_s, "laplace": laplace_s},
        "epochs_run": len(clf.history.train_loss),
        "best_epoch": clf.history.best_epoch,
        "temperature": temperature,
        "laplace_prior_precision": bayes.fitted_prior_precision,
        "held_out": {"raw": raw, "temperature_scaled": scaled, "laplace": laplace},
        "ps1mds": objects,
    }


def markdown(result: dict) -> str:
    """A Markdown summary of one run."""
    s = result["settings"]
    lines = [
        "## Supernova typing (simulated PS1-MDS-like griz light curves)",
        "",
        f"{s['n_train']} training simulations (10 % of them for validation), {s['n_test']} "
        f"held-out test simulations; types {', '.join(s['types'])} with equal prior "
        f"probabilities, {s['form']} form; LightCurveEncoder (features {s['encoder']['features']}"
        f", hidden {s['encoder']['hidden']}); {result['epochs_run']} epochs "
        f"(best {result['best_epoch']}); training {result['timing_s']['train']:.0f} s on "
        f"{result['machine']['jax_backend']} (load average at the end "
        f"{result['machine']['loadavg_at_end'][0]:.1f}). Fitted temperature "
        f"{result['temperature']:.3f}; Laplace prior precision "
        f"{result['laplace_prior_precision']:.3g}.",
        "",
        "| classifier | accuracy | ECE | MCE | NLL | Brier | verdict (p) |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {
        "raw": "network, T = 1",
        "temperature_scaled": "temperature-scaled",
        "laplace": "last-layer Laplace (T = 1)",
    }
    for key, label in names.items():
        m = result["held_out"][key]
        lines.append(
            f"| {label} | {m['accuracy']:.3f} | {m['ece']:.4f} | {m['mce']:.3f} | "
            f"{m['nll']:.3f} | {m['brier']:.3f} | {m['verdict']} ({m['p_value']:.3f}) |"
        )
    confusion = result["held_out"]["temperature_scaled"]["confusion"]
    lines += [
        "",
        "Confusion matrix (temperature-scaled; rows: true type, columns: predicted):",
        "",
        "| true \\ predicted | " + " | ".join(s["types"]) + " |",
        "|---|" + "---|" * len(s["types"]),
    ]
    for t, row in zip(s["types"], confusion, strict=True):
        lines.append(f"| {t} | " + " | ".join(str(v) for v in row) + " |")
    lines += [
        "",
        "PS1-MDS light curves (real; temperature-scaled probabilities; five objects are a "
        "smoke test, not a claim):",
        "",
        "| object | spectroscopic type | points | "
        + " | ".join(f"p({t})" for t in s["types"])
        + " | epistemic (nats) |",
        "|---|---|---|" + "---|" * len(s["types"]) + "---|",
    ]
    for obj in result["ps1mds"]:
        probs = " | ".join(f"{obj['probabilities'][t]:.3f}" for t in s["types"])
        lines.append(
            f"| {obj['id']} | {obj['spectroscopic_type']} | {obj['points']} | {probs} | "
            f"{obj['epistemic_nats']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test settings")
    parser.add_argument("--n-train", type=int, default=30_000)
    parser.add_argument("--n-test", type=int, default=5_000)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    args = parser.parse_args()
    suffix = ""
    if args.quick:
        args.n_train, args.n_test, args.epochs, args.hidden, args.features = 600, 300, 2, 16, 8
        suffix = "_quick"
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"supernova_typing{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (RESULTS / f"supernova_typing{suffix}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
