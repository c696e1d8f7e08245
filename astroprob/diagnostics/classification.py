"""Calibration of predicted class probabilities: reliability diagram and expected calibration error.

For discrete models (model comparison, classifiers) a predicted probability of
0.8 should be right 80 % of the time. Predictions are binned by confidence
(the largest predicted probability); the reliability diagram plots each bin's
accuracy against its mean confidence, and the expected calibration error (ECE)
is the count-weighted mean gap ``|accuracy - confidence|``. Because even a
perfectly calibrated model has a positive ECE on finite data, the verdict uses
consistency resampling: labels are redrawn from the predicted probabilities
themselves many times, and the p-value is the fraction of those ECEs at least
as large as the observed one.

References:
    C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration of Modern
    Neural Networks", ICML 2017, https://arxiv.org/abs/1706.04599.

    J. Bröcker and L. A. Smith, "Increasing the Reliability of Reliability
    Diagrams", Weather and Forecasting 22, 651 (2007).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, PRNGKeyArray

from astroprob.diagnostics import _checks
from astroprob.diagnostics._uniformity import CALIBRATED, OVERCONFIDENT, UNDERCONFIDENT

__all__ = ["ClassificationCalibrationResult", "classification_calibration"]

PROBABILITY_TOLERANCE = 1e-3
"""How far each row of probabilities may sum from 1."""


@dataclass(frozen=True, eq=False)
class ClassificationCalibrationResult:
    """Reliability diagram, calibration errors and verdict of predicted class probabilities.

    Attributes:
        bin_edges: (num_bins + 1,) confidence bin edges on [0, 1].
        bin_confidence: (num_bins,) mean confidence per bin (NaN where empty).
        bin_accuracy: (num_bins,) accuracy per bin (NaN where empty).
        bin_count: (num_bins,) predictions per bin.
        ece: expected calibration error.
        mce: maximum calibration error over non-empty bins.
        brier: multi-class Brier score (mean squared error of the probability vector).
        nll: mean negative log probability of the true class.
        accuracy: overall accuracy of the most probable class.
        mean_confidence: mean of the largest predicted probability.
        p_value: consistency-resampling p-value of ``ece``.
        alpha: the significance level.
        verdict: ``"calibrated"``, ``"overconfident"`` (confidence above accuracy)
            or ``"underconfident"``.
    """

    bin_edges: np.ndarray
    bin_confidence: np.ndarray
    bin_accuracy: np.ndarray
    bin_count: np.ndarray
    ece: float
    mce: float
    brier: float
    nll: float
    accuracy: float
    mean_confidence: float
    p_value: float
    alpha: float
    verdict: str

    def to_dict(self) -> dict:
        """JSON-ready numbers (empty bins as ``None``)."""

        def listed(a: np.ndarray) -> list:
            return [float(v) if np.isfinite(v) else None for v in a]

        return {
            "diagnostic": "classification_calibration",
            "alpha": self.alpha,
            "verdict": self.verdict,
            "ece": self.ece,
            "mce": self.mce,
            "brier": self.brier,
            "nll": self.nll,
            "accuracy": self.accuracy,
            "mean_confidence": self.mean_confidence,
            "p_value": self.p_value,
            "bin_edges": self.bin_edges.tolist(),
            "bin_confidence": listed(self.bin_confidence),
            "bin_accuracy": listed(self.bin_accuracy),
            "bin_count": self.bin_count.tolist(),
        }


def classification_calibration(
    key: PRNGKeyArray,
    probs: ArrayLike,
    labels: ArrayLike,
    *,
    num_bins: int = 10,
    num_resamples: int = 1000,
    alpha: float = 0.05,
) -> ClassificationCalibrationResult:
    """Reliability diagram, ECE, MCE, Brier score and a calibration verdict.

    Args:
        key: PRNG key of the consistency resampling.
        probs: (n, n_classes) predicted probabilities; rows sum to 1.
        labels: (n,) true classes, integers in ``0..n_classes-1``.
        num_bins: equal-width confidence bins on [0, 1].
        num_resamples: label sets redrawn from ``probs`` for the p-value.
        alpha: significance level of the verdict.

    Returns:
        A `ClassificationCalibrationResult`.

    Raises:
        ValueError: on wrong shapes, probabilities outside [0, 1] or rows not
            summing to 1, labels out of range, or bad options.
        TypeError: on non-numeric input or non-integer labels.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> k1, k2 = jax.random.split(jax.random.key(0))
        >>> p = jax.random.uniform(k1, (2000,), minval=0.5, maxval=1.0)
        >>> probs = jnp.stack([p, 1 - p], axis=1)
        >>> labels = (jax.random.uniform(k2, (2000,)) > p).astype(int)  # drawn from probs
        >>> classification_calibration(jax.random.key(1), probs, labels).verdict
        'calibrated'
    """
    probs = _checks.as_real_array("probs", probs)
    labels = np.asarray(labels)
    alpha = _checks.check_alpha(alpha)
    num_bins = _checks.check_int("num_bins", num_bins, minimum=1)
    num_resamples = _checks.check_int("num_resamples", num_resamples, minimum=1)
    if probs.ndim != 2 or probs.shape[1] < 2 or probs.shape[0] < 1:
        raise ValueError(
            f"probs: expected shape (n, n_classes) with n_classes >= 2; got {probs.shape}"
        )
    n, n_classes = probs.shape
    if labels.shape != (n,):
        raise ValueError(f"labels: expected shape ({n},) to match probs; got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels: expected integer class indices; got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"labels: expected integers in 0..{n_classes - 1}; "
            f"got values in {labels.min()}..{labels.max()}"
        )
    _checks.check_finite("probs", probs)
    if probs.min() < 0 or probs.max() > 1:
        raise ValueError("probs: expected probabilities in [0, 1]")
    worst = float(np.abs(probs.sum(axis=1) - 1.0).max())
    if worst > PROBABILITY_TOLERANCE:
        raise ValueError(f"probs: expected rows summing to 1; the worst is off by {worst:.3g}")

    probs64 = probs.astype(np.float64)
    confidence = probs64.max(axis=1)
    correct = (probs64.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, num_bins - 1)
    count = np.bincount(which, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_conf = np.bincount(which, confidence, minlength=num_bins) / count
        bin_acc = np.bincount(which, correct, minlength=num_bins) / count
    gaps = np.abs(np.nan_to_num(bin_acc) - np.nan_to_num(bin_conf))
    ece = float(np.sum(count / n * gaps))
    mce = float(gaps[count > 0].max())
    onehot = np.eye(n_classes)[labels]
    brier = float(np.mean(np.sum((probs64 - onehot) ** 2, axis=1)))
    nll = float(-np.mean(np.log(np.maximum(probs64[np.arange(n), labels], 1e-300))))

    resampled = np.asarray(
        _resampled_ece(
            key,
            jnp.asarray(probs, jnp.float32),
            jnp.asarray(which, jnp.int32),
            num_bins,
            num_resamples,
        )
    )
    p_value = float((1 + np.sum(resampled >= ece - 1e-12)) / (1 + num_resamples))
    accuracy, mean_confidence = float(correct.mean()), float(confidence.mean())
    if p_value > alpha:
        verdict = CALIBRATED
    else:
        verdict = OVERCONFIDENT if mean_confidence > accuracy else UNDERCONFIDENT
    return ClassificationCalibrationResult(
        bin_edges=edges,
        bin_confidence=bin_conf,
        bin_accuracy=bin_acc,
        bin_count=count,
        ece=ece,
        mce=mce,
        brier=brier,
        nll=nll,
        accuracy=accuracy,
        mean_confidence=mean_confidence,
        p_value=p_value,
        alpha=alpha,
        verdict=verdict,
    )


@functools.partial(jax.jit, static_argnums=(3, 4))
def _resampled_ece(
    key: PRNGKeyArray, probs: Array, which: Array, num_bins: int, num_resamples: int
) -> Array:
    """ECEs of ``num_resamples`` label sets drawn from ``probs`` (same bins, same predictions)."""
    n = probs.shape[0]
    confidence = probs.max(axis=1)
    predicted = probs.argmax(axis=1)
    log_probs = jnp.log(jnp.maximum(probs, 1e-30))
    conf_sum = jnp.bincount(which, confidence, length=num_bins)

    def one(k: PRNGKeyArray) -> Array:
        labels = jax.random.categorical(k, log_probs, axis=-1)
        acc_sum = jnp.bincount(which, (labels == predicted).astype(jnp.float32), length=num_bins)
        return jnp.sum(jnp.abs(acc_sum - conf_sum)) / n

    return jax.lax.map(one, jax.random.split(key, num_resamples), batch_size=100)
