"""Tests of Accuracy with Random Points (TARP): expected coverage of random balls.

For each simulation a reference point ``r`` is drawn at random; the posterior's
credible region of level ``a`` is the ball around ``r`` holding a fraction ``a``
of the posterior samples. The fraction ``f`` of samples closer to ``r`` than the
true parameters is uniform for a correct posterior, so the expected coverage
probability ``ECP(a) = mean(f < a)`` lies on the diagonal. Lemos et al. (2023)
show that with random references this is necessary and sufficient for a correct
posterior. The curve comes with pointwise bootstrap bands (simulations resampled
with replacement), the area between the curve and the diagonal, sbi's signed
area over ``a > 1/2`` (``atc``), and the exact ECDF test of Säilynoja et al.
(2022) on the counts behind ``f``, which gives the verdict.

References:
    P. Lemos, A. Coogan, Y. Hezaveh and L. Perreault-Levasseur, "Sampling-Based
    Accuracy Testing of Posterior Estimators for General Inference", ICML 2023,
    https://arxiv.org/abs/2302.03026.
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
from astroprob.diagnostics._uniformity import (
    CALIBRATED,
    OVERCONFIDENT,
    UNDERCONFIDENT,
    RankUniformity,
    rank_uniformity,
)

__all__ = ["TARPResult", "tarp"]

METRICS = ("euclidean", "manhattan")
NORMALISATION_EPS = 1e-10
"""Added to each parameter's range when normalising (as the ``tarp`` package does)."""


@dataclass(frozen=True, eq=False)
class TARPResult:
    """The TARP expected-coverage curve, its bootstrap band and its test.

    Attributes:
        levels: (num_bins + 1,) credibility levels ``a``, evenly spaced on [0, 1].
        ecp: (num_bins + 1,) expected coverage probability ``mean(f < a)``.
        ecp_lower: (num_bins + 1,) pointwise ``alpha / 2`` bootstrap quantile of ``ecp``.
        ecp_upper: (num_bins + 1,) pointwise ``1 - alpha / 2`` quantile.
        ecp_std: (num_bins + 1,) bootstrap standard deviation of ``ecp``.
        f: (n_sims,) fraction of samples closer to the reference than the truth.
        references: (n_sims, dim) reference points, in parameter space.
        area: integral of ``|ecp - a|`` over ``a``.
        atc: sbi's ``sum over a >= 1/2 of (ecp - a) * da``: negative means
            overconfident, positive underconfident.
        test: the exact ECDF test of the ranks behind ``f`` (`RankUniformity`).
        p_value: that test's p-value.
        alpha: the significance level.
        verdict: ``"calibrated"``, ``"overconfident"`` or ``"underconfident"``.
    """

    levels: np.ndarray
    ecp: np.ndarray
    ecp_lower: np.ndarray
    ecp_upper: np.ndarray
    ecp_std: np.ndarray
    f: np.ndarray
    references: np.ndarray
    area: float
    atc: float
    test: RankUniformity
    p_value: float
    alpha: float
    verdict: str

    @property
    def calibrated(self) -> bool:
        """Whether the TARP test finds no departure from the diagonal."""
        return self.verdict == CALIBRATED

    def ecp_at(self, levels: ArrayLike) -> np.ndarray:
        """``mean(f < a)`` at any levels ``a`` (e.g. another package's grid)."""
        levels = np.asarray(levels, np.float64)
        return (self.f[:, None] < levels.reshape(-1)[None, :]).mean(axis=0).reshape(levels.shape)

    def to_dict(self) -> dict:
        """JSON-ready numbers and curves."""
        return {
            "diagnostic": "tarp",
            "alpha": self.alpha,
            "num_simulations": int(self.f.size),
            "verdict": self.verdict,
            "p_value": self.p_value,
            "area": self.area,
            "atc": self.atc,
            "levels": self.levels.tolist(),
            "ecp": self.ecp.tolist(),
            "ecp_lower": self.ecp_lower.tolist(),
            "ecp_upper": self.ecp_upper.tolist(),
            "ecp_std": self.ecp_std.tolist(),
        }


def tarp(
    key: PRNGKeyArray,
    samples: ArrayLike,
    theta: ArrayLike,
    *,
    references: ArrayLike | None = None,
    metric: str = "euclidean",
    normalize: bool = True,
    num_bins: int | None = None,
    num_bootstrap: int = 100,
    alpha: float = 0.05,
) -> TARPResult:
    """TARP expected coverage with random references, bootstrap bands and a verdict.

    Args:
        key: PRNG key for the reference points and the bootstrap.
        samples: (n_sims, n_samples, dim) posterior draws for each simulated observation.
        theta: (n_sims, dim) the true parameters, drawn from the prior.
        references: optional (n_sims, dim) reference points in parameter space;
            default: uniform over the box spanned by ``theta``.
        metric: ``"euclidean"`` or ``"manhattan"`` distance.
        normalize: rescale every parameter by the range of ``theta``
            (``(v - min) / (max - min + 1e-10)``) before measuring distances.
        num_bins: the curve has ``num_bins + 1`` levels; default ``max(n_sims // 10, 10)``.
        num_bootstrap: bootstrap resamples of the simulations for the band.
        alpha: significance level of the test and width of the band.

    Returns:
        A `TARPResult`.

    Raises:
        ValueError: on shapes that do not match, non-finite input or bad options.
        TypeError: on non-numeric arrays.

    Warns:
        UserWarning: with fewer than 100 simulations or posterior samples.

    Examples:
        >>> import jax
        >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
        >>> theta = jax.random.normal(k1, (300, 3))
        >>> samples = jax.random.normal(k2, (300, 200, 3))  # the prior as posterior
        >>> tarp(k3, samples, theta).verdict
        'calibrated'
    """
    samples, theta = _checks.check_samples_theta(samples, theta)
    alpha = _checks.check_alpha(alpha)
    n_sims, n_samples, dim = samples.shape
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}; got {metric!r}")
    num_bootstrap = _checks.check_int("num_bootstrap", num_bootstrap, minimum=1)
    num_bins = (
        max(n_sims // 10, 10)
        if num_bins is None
        else _checks.check_int("num_bins", num_bins, minimum=1)
    )
    key_ref, key_boot = jax.random.split(key)
    if references is None:
        low, high = theta.min(axis=0), theta.max(axis=0)
        unit = np.asarray(jax.random.uniform(key_ref, (n_sims, dim)))
        references = (low + unit * (high - low)).astype(np.float32)
    else:
        references = _checks.as_real_array("references", references)
        if references.shape != (n_sims, dim):
            raise ValueError(
                f"references: expected shape (n_sims, dim) = ({n_sims}, {dim}); "
                f"got {references.shape}"
            )
        _checks.check_finite("references", references)
        references = references.astype(np.float32)
    _checks.warn_if_few(n_sims, n_samples, diagnostic="tarp")

    # Distances do not depend on the shift of the normalisation, only on its scale.
    if normalize:
        scale = 1.0 / (theta.max(axis=0) - theta.min(axis=0) + NORMALISATION_EPS)
    else:
        scale = np.ones(dim, np.float32)
    ranks = np.asarray(
        _tarp_ranks(
            jnp.asarray(samples),
            jnp.asarray(theta),
            jnp.asarray(references),
            jnp.asarray(scale, jnp.float32),
            euclidean=metric == "euclidean",
        )
    ).astype(np.int64)
    f = ranks / n_samples
    levels = np.linspace(0.0, 1.0, num_bins + 1)
    ecp, boot = (
        np.asarray(a, np.float64)
        for a in _bootstrap_ecp(
            key_boot, jnp.asarray(f, jnp.float32), jnp.asarray(levels, jnp.float32), num_bootstrap
        )
    )
    da = levels[1] - levels[0]
    mid = levels.size // 2
    atc = float(np.sum((ecp[mid:] - levels[mid:]) * da))
    gap = np.abs(ecp - levels)
    area = float(np.sum(0.5 * (gap[1:] + gap[:-1]) * np.diff(levels)))
    test = rank_uniformity(ranks[:, None], n_samples + 1, alpha=alpha)
    verdict = _direction(rejected=bool(test.rejected[0]), atc=atc)
    return TARPResult(
        levels=levels,
        ecp=ecp,
        ecp_lower=np.quantile(boot, alpha / 2, axis=0),
        ecp_upper=np.quantile(boot, 1 - alpha / 2, axis=0),
        ecp_std=boot.std(axis=0, ddof=1) if num_bootstrap > 1 else np.zeros_like(ecp),
        f=f,
        references=references,
        area=area,
        atc=atc,
        test=test,
        p_value=float(test.p_value[0]),
        alpha=alpha,
        verdict=verdict,
    )


def _direction(*, rejected: bool, atc: float) -> str:
    if not rejected:
        return CALIBRATED
    return OVERCONFIDENT if atc < 0 else UNDERCONFIDENT


@functools.partial(jax.jit, static_argnames="euclidean")
def _tarp_ranks(
    samples: Array, theta: Array, references: Array, scale: Array, *, euclidean: bool
) -> Array:
    """(n_sims,) number of samples strictly closer to the reference than the truth."""

    def distance(a: Array, b: Array) -> Array:
        diff = (a - b) * scale
        return jnp.sqrt(jnp.sum(diff**2, axis=-1)) if euclidean else jnp.sum(jnp.abs(diff), -1)

    ref = references[:, None, :]
    d_samples = distance(samples, ref)
    d_truth = distance(theta[:, None, :], ref)
    return jnp.sum(d_samples < d_truth, axis=1, dtype=jnp.int32)


@functools.partial(jax.jit, static_argnums=3)
def _bootstrap_ecp(
    key: PRNGKeyArray, f: Array, levels: Array, num_bootstrap: int
) -> tuple[Array, Array]:
    """The ECP curve of ``f`` ``(L,)`` and of ``num_bootstrap`` resamples ``(num_bootstrap, L)``."""
    hits = (f[:, None] < levels[None, :]).astype(jnp.float32)
    n = f.shape[0]
    index = jax.random.randint(key, (num_bootstrap, n), 0, n)
    counts = jax.vmap(lambda i: jnp.bincount(i, length=n))(index).astype(jnp.float32)
    return hits.mean(axis=0), counts @ hits / n
