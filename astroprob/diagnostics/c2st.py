"""Classifier two-sample test (C2ST), as defined by the sbibm benchmark.

A classifier is trained to tell samples of ``p`` from samples of ``q``; its
cross-validated accuracy measures how different the two distributions are:
0.5 when the classifier cannot tell them apart (with equal sample sizes), 1
when it separates them perfectly. The classifier, its training and the
cross-validation follow sbibm's ``c2st`` metric exactly, but run in JAX with all
folds trained at once.

References:
    D. Lopez-Paz and M. Oquab, "Revisiting Classifier Two-Sample Tests", ICLR 2017,
    https://arxiv.org/abs/1610.06545.

    J.-M. Lueckmann, J. Boelts, D. S. Greenberg, P. J. Gonçalves and J. H. Macke,
    "Benchmarking Simulation-Based Inference", AISTATS 2021,
    https://arxiv.org/abs/2101.04653 (sbibm, ``sbibm/metrics/c2st.py``).
"""

from __future__ import annotations

import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from astroprob.diagnostics._classifier import cross_validated_accuracy, fold_layout

__all__ = ["c2st"]


def c2st(
    samples_p: ArrayLike,
    samples_q: ArrayLike,
    *,
    seed: int = 1,
    n_folds: int = 5,
    z_score: bool = True,
    max_iter: int = 10_000,
) -> float:
    """Classifier two-sample test: cross-validated accuracy of telling ``p`` from ``q``.

    Both sample sets are z-scored with the mean and standard deviation of
    ``samples_p`` (if ``z_score``). Samples of ``p`` are labelled 0 and samples
    of ``q`` 1. A multilayer perceptron with two hidden layers of ``10 * dim``
    ReLU units is trained on each of ``n_folds`` shuffled K-fold splits, exactly
    as sbibm trains scikit-learn's ``MLPClassifier`` (Adam with step size 1e-3,
    minibatches of ``min(200, n_train)``, L2 penalty ``alpha = 1e-4``, stopping
    once the training loss has not improved by ``1e-4`` for more than 10
    consecutive epochs, or after ``max_iter`` epochs). The result is the mean
    held-out accuracy over the folds.

    With equal sample sizes, 0.5 means the classifier cannot tell the samples
    apart and 1.0 means it separates them perfectly. With unequal sizes the
    chance level is ``max(n_p, n_q) / (n_p + n_q)``.

    The split, the initialisations and the minibatch order all derive from
    ``jax.random.key(seed)``, so the result is deterministic for a given seed
    (it does not reproduce sklearn's random numbers, only its algorithm). The
    kernel is compiled once per combination of sample sizes and ``dim``.

    Args:
        samples_p: samples of the first distribution, shape (n_p, dim); numpy or
            JAX array.
        samples_q: samples of the second distribution, shape (n_q, dim).
        seed: seed of the fold split, the initialisation and the minibatch order.
        n_folds: number of cross-validation folds, at least 2.
        z_score: standardise both sets with the mean and (unbiased) standard
            deviation of ``samples_p`` per dimension.
        max_iter: maximum number of training epochs per fold.

    Returns:
        The mean held-out classification accuracy over the folds, a Python float
        in [0, 1].

    Raises:
        ValueError: if a sample set is not a 2-D array, the two sets differ in
            ``dim``, either holds fewer than ``n_folds`` samples or a non-finite
            value, ``samples_p`` has zero spread in some dimension while
            ``z_score`` is set, or ``n_folds`` or ``max_iter`` is out of range.
        TypeError: if a sample set is not numeric, or ``n_folds``, ``max_iter``
            or ``seed`` is not an integer.

    Warns:
        RuntimeWarning: if some fold stopped at ``max_iter`` before converging.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> p = rng.normal(size=(500, 2))
        >>> q = rng.normal(size=(500, 2)) + 10.0
        >>> c2st(p, q) > 0.99
        True

    References:
        D. Lopez-Paz and M. Oquab, "Revisiting Classifier Two-Sample Tests", ICLR
        2017, https://arxiv.org/abs/1610.06545.

        J.-M. Lueckmann et al., "Benchmarking Simulation-Based Inference", AISTATS
        2021, https://arxiv.org/abs/2101.04653.
    """
    n_folds = _check_int("n_folds", n_folds, minimum=2)
    max_iter = _check_int("max_iter", max_iter, minimum=1)
    seed = _check_int("seed", seed)
    p = _check_samples("samples_p", samples_p, n_folds)
    q = _check_samples("samples_q", samples_q, n_folds)
    if p.shape[1] != q.shape[1]:
        raise ValueError(
            f"samples_q: expected the same dim as samples_p ({p.shape[1]}); got shape {q.shape}"
        )

    if z_score:
        mean, std = p.mean(axis=0), p.std(axis=0, ddof=1)
        if np.any(std == 0):
            raise ValueError(
                "samples_p: expected a non-zero standard deviation in every dimension "
                f"to z-score with; got zero in dimension(s) {np.flatnonzero(std == 0).tolist()}"
            )
        p, q = (p - mean) / std, (q - mean) / std

    dtype = jnp.result_type(float)
    x = jnp.asarray(np.concatenate([p, q]), dtype)
    y = jnp.concatenate([jnp.zeros(len(p), dtype), jnp.ones(len(q), dtype)])
    layout = fold_layout(len(x), n_folds)
    accuracy, n_epochs = cross_validated_accuracy(
        jax.random.key(seed), x, y, *layout, jnp.asarray(max_iter, jnp.int32)
    )
    if np.any(np.asarray(n_epochs) >= max_iter):
        warnings.warn(
            f"c2st: the classifier of some fold reached max_iter={max_iter} epochs "
            "before its training loss converged; the accuracy may be too low.",
            RuntimeWarning,
            stacklevel=2,
        )
    return float(np.mean(np.asarray(accuracy, np.float64)))


def _check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer; got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}; got {value}")
    return value


def _check_samples(name: str, samples: object, n_folds: int) -> np.ndarray:
    """Validate one sample set and return it as a float64 numpy array."""
    array = np.asarray(samples)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name}: expected a real-valued numeric array; got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (n, dim); got shape {array.shape}")
    if array.shape[1] < 1:
        raise ValueError(f"{name}: expected dim >= 1; got shape {array.shape}")
    if array.shape[0] < n_folds:
        raise ValueError(
            f"{name}: expected at least n_folds={n_folds} samples; got {array.shape[0]}"
        )
    finite = np.isfinite(array)
    if not finite.all():
        n_bad = int(array.shape[0] - finite.all(axis=1).sum())
        raise ValueError(f"{name}: expected finite values; got NaN or inf in {n_bad} sample(s)")
    return array.astype(np.float64)
