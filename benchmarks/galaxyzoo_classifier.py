"""Galaxy Zoo morphology: Bayesian (last-layer Laplace) classifier against a plain CNN.

The 556 real SDSS gri cutouts of ``../shared/data/galaxyzoo1_sdss_subset/`` with
Galaxy Zoo 1 classes (elliptical, clockwise spiral, anticlockwise spiral,
edge-on, don't know, merger) are split once, stratified by class, into a
training set and a held-out test set (``--test-fraction``, fixed seed). The
test images are never used for training, early stopping, temperature fitting
or the Laplace posterior. A stratified 20 % of the training images (split by
image, before augmentation) is the validation set for early stopping and the
temperature.

Compared on the test images, with the same trained network where possible:

- ``cnn``: `astroprob.nn.ConvEmbedding` + softmax (`ModelClassifier`), T = 1;
- ``cnn_temperature``: the same network, temperature fitted on its validation split;
- ``cnn_laplace``: the same network made Bayesian post hoc (`BayesianClassifier.from_classifier`);
- ``equivariant_laplace``: a C4-equivariant CNN (`astroprob.nn.EquivariantCNN`, invariant
  under 90° rotations but not mirrors, so the handedness of spirals stays visible) with
  the last-layer Laplace posterior.

Reported: accuracy, ECE (and verdict), NLL, and the AUROC with which the
predictive entropy ranks misclassified test images above correctly classified
ones (0.5: no better than chance).

Training images are augmented with the four 90° rotations (labels unchanged;
mirror images would swap clockwise and anticlockwise).

Usage::

    python benchmarks/galaxyzoo_classifier.py            # moderate settings
    python benchmarks/galaxyzoo_classifier.py --quick    # smoke test

Writes ``benchmarks/results/galaxyzoo_classifier[_quick].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from PIL import Image

import astroprob as ap
from astroprob.inference import BayesianClassifier, ModelClassifier

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
DATA = REPO.parent / "shared" / "data" / "galaxyzoo1_sdss_subset"
CLASSES = ("elliptical", "spiral_cw", "spiral_acw", "edge_on", "dont_know", "merger")


def load_images(size: int, crop: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images ``(n, size, size, 3)`` in [0, 1] (central ``crop`` fraction), labels, ids."""
    rows = list(csv.DictReader((DATA / "labels_subset.csv").open()))
    images, labels, ids = [], [], []
    for row in rows:
        with Image.open(DATA / "images" / f"{row['OBJID']}.jpeg") as im:
            im = im.convert("RGB")
            w, h = im.size
            half = crop * min(w, h) / 2
            box = (w / 2 - half, h / 2 - half, w / 2 + half, h / 2 + half)
            im = im.resize((size, size), Image.Resampling.BOX, box=box)
            images.append(np.asarray(im, dtype=np.float32) / 255.0)
        labels.append(int(row["CLASS"]))
        ids.append(row["OBJID"])
    return np.stack(images), np.asarray(labels, dtype=np.int32), ids


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
    """Disjoint train and test indices, the same test fraction in every class."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(test_fraction * len(idx)))
        test.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(train), np.sort(test)


def rotations(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The four 90° rotations of every image (labels unchanged)."""
    xs = [np.rot90(x, k, axes=(1, 2)) for k in range(4)]
    return np.concatenate(xs), np.tile(y, 4)


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``positive`` (Mann-Whitney, ties halved)."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def evaluate(key: jax.Array, probs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, calibration and the misclassification AUROC of the predictive entropy."""
    result = ap.diagnostics.classification_calibration(key, probs, labels, num_resamples=1000)
    entropy = -np.sum(probs * np.log(np.maximum(probs, 1e-300)), axis=1)
    wrong = probs.argmax(axis=1) != labels
    out = {
        k: v
        for k, v in result.to_dict().items()
        if k in ("accuracy", "ece", "mce", "nll", "brier", "verdict", "p_value", "mean_confidence")
    }
    out["auroc_entropy_misclassified"] = auroc(entropy, wrong)
    out["num_misclassified"] = int(wrong.sum())
    return out


def train_classifier(args, embedding, x, y, val, seed: int) -> tuple[ModelClassifier, float]:
    """A ModelClassifier with the given embedding; ``val`` decides early stopping."""
    clf = ModelClassifier(CLASSES, embedding=embedding, hidden=args.hidden, depth=1)
    t0 = time.perf_counter()
    clf.fit(
        jax.random.key(seed),
        x,
        y,
        max_epochs=args.epochs,
        patience=args.patience,
        batch_size=64,
        learning_rate=args.learning_rate,
        weight_decay=1e-4,
        validation=val,
        progress_bar=args.progress,
    )
    return clf, time.perf_counter() - t0


def run(args: argparse.Namespace) -> dict:
    """Load, split, train, evaluate; returns the results dict."""
    images, labels, ids = load_images(args.size, args.crop)
    train_idx, test_idx = stratified_split(labels, args.test_fraction, args.seed)
    # Validation images (early stopping, temperature) are split off by image, before the
    # augmentation, so that no rotated copy of a validation image is trained on.
    fit_part, val_part = stratified_split(labels[train_idx], 0.2, args.seed + 1)
    fit_idx, val_idx = train_idx[fit_part], train_idx[val_part]
    x_train, y_train = rotations(images[fit_idx], labels[fit_idx])
    val = rotations(images[val_idx], labels[val_idx])
    x_test, y_test = images[test_idx], labels[test_idx]
    key = jax.random.key(args.seed + 10)
    results, timing = {}, {}

    cnn = ap.nn.ConvEmbedding(
        (args.size, args.size), features=32, channels=(16, 32, 32), in_channels=3, hidden=64,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    clf, timing["cnn_train"] = train_classifier(args, cnn, x_train, y_train, val, args.seed + 1)
    temperature = clf.temperature
    results["cnn_temperature"] = evaluate(key, clf.predict_proba(x_test), y_test)
    clf.set_temperature(1.0)
    results["cnn"] = evaluate(key, clf.predict_proba(x_test), y_test)
    t0 = time.perf_counter()
    bayes = BayesianClassifier.from_classifier(jax.random.key(args.seed + 2), clf, x_train)
    timing["cnn_laplace"] = time.perf_counter() - t0
    results["cnn_laplace"] = evaluate(key, bayes.predict_proba(x_test), y_test)
    info = {
        "cnn": {
            "epochs_run": len(clf.history.train_loss),
            "best_epoch": clf.history.best_epoch,
            "temperature": temperature,
            "laplace_prior_precision": bayes.fitted_prior_precision,
        }
    }

    if not args.skip_equivariant:
        eq = ap.nn.EquivariantCNN(
            "C4",
            features=32,
            in_channels=3,
            channels=tuple(args.eq_channels),
            hidden=64,
            rngs=nnx.Rngs(0),
        )
        eq_clf, timing["equivariant_train"] = train_classifier(
            args, eq, x_train, y_train, val, args.seed + 3
        )
        eq_clf.set_temperature(1.0)
        results["equivariant"] = evaluate(key, eq_clf.predict_proba(x_test), y_test)
        eq_bayes = BayesianClassifier.from_classifier(
            jax.random.key(args.seed + 4), eq_clf, x_train
        )
        results["equivariant_laplace"] = evaluate(key, eq_bayes.predict_proba(x_test), y_test)
        info["equivariant"] = {
            "epochs_run": len(eq_clf.history.train_loss),
            "best_epoch": eq_clf.history.best_epoch,
            "laplace_prior_precision": eq_bayes.fitted_prior_precision,
        }

    return {
        "benchmark": "galaxyzoo_classifier",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_at_end": os.getloadavg(),
            "jax_backend": jax.default_backend(),
        },
        "settings": {
            "classes": list(CLASSES),
            "image_size": args.size,
            "crop": args.crop,
            "n_train_images": int(len(fit_idx)),
            "n_validation_images": int(len(val_idx)),
            "n_train_augmented": int(len(x_train)),
            "n_test_images": int(len(test_idx)),
            "test_fraction": args.test_fraction,
            "epochs_max": args.epochs,
            "patience": args.patience,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
            "cnn": {"features": 32, "channels": [16, 32, 32], "hidden": 64},
            "equivariant": {"group": "C4", "features": 32, "channels": list(args.eq_channels)},
        },
        "test_ids": [ids[i] for i in test_idx],
        "timing_s": timing,
        "training": info,
        "held_out": results,
    }


def markdown(result: dict) -> str:
    """A Markdown summary of one run."""
    s = result["settings"]
    lines = [
        "## Galaxy Zoo 1 morphology (real SDSS cutouts): Bayesian vs plain classifier",
        "",
        f"{s['n_train_images']} training and {s['n_validation_images']} validation images "
        "(each x4 rotations; validation for early stopping and temperature), "
        f"{s['n_test_images']} held-out test images (stratified, never used for training or "
        f"model selection); {len(s['classes'])} classes; {s['image_size']}x{s['image_size']} "
        f"pixels (central {s['crop']:.0%} of each cutout). Load average at the end "
        f"{result['machine']['loadavg_at_end'][0]:.1f} ({result['machine']['jax_backend']}).",
        "",
        "| classifier | accuracy | ECE | NLL | Brier | verdict (p) | AUROC |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {
        "cnn": "ConvEmbedding CNN, T = 1",
        "cnn_temperature": "same, temperature-scaled",
        "cnn_laplace": "same, last-layer Laplace",
        "equivariant": "C4-equivariant CNN, T = 1",
        "equivariant_laplace": "C4-equivariant CNN, last-layer Laplace",
    }
    for key, label in names.items():
        if key not in result["held_out"]:
            continue
        m = result["held_out"][key]
        lines.append(
            f"| {label} | {m['accuracy']:.3f} | {m['ece']:.3f} | {m['nll']:.3f} | "
            f"{m['brier']:.3f} | {m['verdict']} ({m['p_value']:.3f}) | "
            f"{m['auroc_entropy_misclassified']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test settings")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--crop", type=float, default=0.5)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-equivariant", action="store_true")
    parser.add_argument(
        "--eq-channels", type=int, nargs="+", default=[4, 8, 8], help="EquivariantCNN channels"
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    args = parser.parse_args()
    suffix = ""
    if args.quick:
        args.size, args.epochs, args.hidden = 32, 2, 16
        suffix = "_quick"
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"galaxyzoo_classifier{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (RESULTS / f"galaxyzoo_classifier{suffix}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
