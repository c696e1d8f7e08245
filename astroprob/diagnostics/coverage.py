"""Expected coverage of highest-posterior-density (HPD) regions.

For each simulated observation, the smallest HPD region that contains the true
parameters has some credibility level; for a correct posterior that level is
uniform on [0, 1], so the HPD region of credibility ``c`` contains the truth in
a fraction ``c`` of the simulations (the expected coverage). A curve below the
diagonal means the regions are too small (overconfident), above it too large
(underconfident, conservative).

The credibility level of the truth is estimated from the posterior samples: it
is the fraction of samples whose density exceeds the density at the truth. The
density is either a given log-density (exact HPD regions of that density) or, by
default, a Gaussian kernel density estimate built from part of the samples and
evaluated on the rest. Because the truth and the evaluated samples are
exchangeable under a correct posterior, the count of denser samples is then
exactly uniform whatever the kernel's quality, so the test keeps its level; the
kernel only decides its power. Coverage is the ECDF of these counts, tested
with the exact ECDF test and simultaneous band of Säilynoja et al. (2022).

References:
    J. Hermans, A. Delaunoy, F. Rozet, A. Wehenkel, V. Begy and G. Louppe, "A Trust
    Crisis In Simulation-Based Inference? Your Posterior Approximations Can Be
    Unfaithful", TMLR (2022), https://arxiv.org/abs/2110.06581.

    T. Säilynoja, P.-C. Bürkner and A. Vehtari, "Graphical test for discrete
    uniformity", Statistics and Computing 32, 32 (2022),
    https://arxiv.org/abs/2103.10522.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array
from scipy import stats

from astroprob.diagnostics import _checks
from astroprob.diagnostics._uniformity import (
    CALIBRATED,
    OVERCONFIDENT,
    UNDERCONFIDENT,
    RankUniformity,
    rank_uniformity,
)
from astroprob.diagnostics.sbc import function_values, ranks_of_values

__all__ = ["CoverageResult", "expected_coverage"]

KDE_BATCH = 32
"""Simulations per step of the kernel density estimate (bounds its memory)."""


@dataclass(frozen=True, eq=False)
class CoverageResult:
    """Expected coverage of HPD regions at many credibility levels.

    Attributes:
        levels: (K,) credibility levels (exact multiples of ``1 / num_ranked``).
        coverage: (K,) fraction of simulations whose true parameters lie in the
            HPD region of each level.
        coverage_lower: (K,) lower end of the pointwise ``1 - alpha`` Monte Carlo
            interval of ``coverage`` (Jeffreys binomial interval).
        coverage_upper: (K,) its upper end.
        band_lower: (K,) lower edge of the simultaneous ``1 - alpha`` band that a
            calibrated posterior's curve stays inside.
        band_upper: (K,) its upper edge.
        credibility: (n_sims,) credibility level of the smallest HPD region that
            contains each true value (uniform on [0, 1] when calibrated).
        ranks: (n_sims,) number of ranked samples denser than the truth.
        num_ranked: posterior samples ranked per simulation.
        method: ``"log_prob"`` (given density) or ``"kde"`` (kernel estimate).
        p_value: exact p-value of the ECDF test of uniform credibility levels.
        log_gamma: its log gamma statistic.
        area: mean of ``coverage - levels``: negative overconfident, positive
            underconfident.
        overconfident: whether the curve falls below the band somewhere.
        underconfident: whether it rises above the band somewhere.
        alpha: the significance level.
        verdict: ``"calibrated"``, ``"overconfident"`` or ``"underconfident"``.
    """

    levels: np.ndarray
    coverage: np.ndarray
    coverage_lower: np.ndarray
    coverage_upper: np.ndarray
    band_lower: np.ndarray
    band_upper: np.ndarray
    credibility: np.ndarray
    ranks: np.ndarray
    num_ranked: int
    method: str
    p_value: float
    log_gamma: float
    area: float
    overconfident: bool
    underconfident: bool
    alpha: float
    verdict: str

    @property
    def calibrated(self) -> bool:
        """Whether the coverage curve is consistent with the diagonal."""
        return self.verdict == CALIBRATED

    def to_dict(self) -> dict:
        """JSON-ready numbers and curves."""
        return {
            "diagnostic": "expected_coverage",
            "method": self.method,
            "alpha": self.alpha,
            "num_simulations": int(self.ranks.size),
            "num_ranked": self.num_ranked,
            "verdict": self.verdict,
            "p_value": self.p_value,
            "log_gamma": self.log_gamma if np.isfinite(self.log_gamma) else None,
            "area": self.area,
            "overconfident": self.overconfident,
            "underconfident": self.underconfident,
            "levels": self.levels.tolist(),
            "coverage": self.coverage.tolist(),
            "coverage_lower": self.coverage_lower.tolist(),
            "coverage_upper": self.coverage_upper.tolist(),
            "band_lower": self.band_lower.tolist(),
            "band_upper": self.band_upper.tolist(),
            "credibility": self.credibility.tolist(),
        }


def expected_coverage(
    samples: ArrayLike,
    theta: ArrayLike,
    *,
    log_prob: Callable[[Array], ArrayLike] | None = None,
    alpha: float = 0.05,
    num_levels: int | None = None,
    num_kernel_points: int = 256,
) -> CoverageResult:
    """Expected coverage of highest-posterior-density regions, with error bars and verdict.

    Args:
        samples: (n_sims, n_samples, dim) posterior draws for each simulated observation.
        theta: (n_sims, dim) the true parameters, drawn from the prior.
        log_prob: the posterior log-density, called as ``log_prob(theta)`` with
            ``(n_sims, m, dim)`` and returning ``(n_sims, m)`` (row ``i`` for
            observation ``i``, as ``Posterior.log_prob`` of a batch). If ``None``,
            a Gaussian kernel density estimate on the first ``num_kernel_points``
            samples of each simulation ranks the remaining samples.
        alpha: significance level of the test, of the band and of the error bars.
        num_levels: credibility levels at which coverage is computed (default
            ``min(n_sims, number of ranked samples)``).
        num_kernel_points: kernel centres per simulation (at most half the samples).

    Returns:
        A `CoverageResult` with ``levels``, ``coverage``, error bars, band, verdict.

    Raises:
        ValueError: on shapes that do not match, non-finite input, too few
            samples, or ``log_prob`` returning the wrong shape or NaN.
        TypeError: on non-numeric arrays or a non-callable ``log_prob``.

    Warns:
        UserWarning: with fewer than 100 simulations or ranked samples.

    Examples:
        >>> import jax
        >>> k1, k2 = jax.random.split(jax.random.key(0))
        >>> theta = jax.random.normal(k1, (200, 2))
        >>> samples = 0.5 * jax.random.normal(k2, (200, 400, 2))  # too narrow: overconfident
        >>> expected_coverage(samples, theta).verdict
        'overconfident'
    """
    samples, theta = _checks.check_samples_theta(samples, theta, min_samples=2)
    alpha = _checks.check_alpha(alpha)
    n_sims, n_samples, dim = samples.shape
    if num_levels is not None:
        num_levels = _checks.check_int("num_levels", num_levels, minimum=1)
    if log_prob is not None and not callable(log_prob):
        raise TypeError(f"log_prob: expected a callable or None; got {type(log_prob).__name__}")

    samples_j, theta_j = jnp.asarray(samples), jnp.asarray(theta)
    if log_prob is not None:
        method = "log_prob"
        on_samples = function_values("log_prob", log_prob, samples_j, (n_sims, n_samples))
        on_truth = function_values("log_prob", log_prob, theta_j[:, None, :], (n_sims, 1))
        num_ranked = n_samples
    else:
        method = "kde"
        num_kernel_points = _checks.check_int("num_kernel_points", num_kernel_points, minimum=1)
        n_centres = min(num_kernel_points, n_samples // 2)
        on_samples, on_truth = _kde_log_density(samples_j, theta_j, n_centres)
        num_ranked = n_samples - n_centres
    _checks.warn_if_few(n_sims, num_ranked, diagnostic="expected_coverage")

    # Rank by density from the top: how many samples are denser than the truth.
    ranks = np.asarray(ranks_of_values(-on_samples, -on_truth)).astype(np.int64)
    test = rank_uniformity(ranks[:, None], num_ranked + 1, alpha=alpha, num_points=num_levels)
    return _result(test, ranks, num_ranked, method, alpha, n_sims)


def _result(
    test: RankUniformity, ranks: np.ndarray, num_ranked: int, method: str, alpha: float, n: int
) -> CoverageResult:
    coverage = test.ecdf[0]
    hits = np.round(coverage * n)
    lower = np.where(hits > 0, stats.beta.ppf(alpha / 2, hits + 0.5, n - hits + 0.5), 0.0)
    upper = np.where(hits < n, stats.beta.ppf(1 - alpha / 2, hits + 0.5, n - hits + 0.5), 1.0)
    area = float(np.mean(coverage - test.grid))
    below, above = bool(test.below_band[0]), bool(test.above_band[0])
    if not test.rejected[0]:
        verdict = CALIBRATED
    elif below != above:
        verdict = OVERCONFIDENT if below else UNDERCONFIDENT
    else:
        verdict = OVERCONFIDENT if area < 0 else UNDERCONFIDENT
    return CoverageResult(
        levels=test.grid,
        coverage=coverage,
        coverage_lower=lower,
        coverage_upper=upper,
        band_lower=test.band_lower,
        band_upper=test.band_upper,
        credibility=ranks / num_ranked,
        ranks=ranks,
        num_ranked=num_ranked,
        method=method,
        p_value=float(test.p_value[0]),
        log_gamma=float(test.log_gamma[0]),
        area=area,
        overconfident=below,
        underconfident=above,
        alpha=alpha,
        verdict=verdict,
    )


@functools.partial(jax.jit, static_argnums=2)
def _kde_log_density(samples: Array, theta: Array, n_centres: int) -> tuple[Array, Array]:
    """Log kernel density (up to a constant per simulation) at the ranked samples and the truth.

    The kernel is Gaussian with a diagonal bandwidth, Scott's factor times each
    parameter's sample standard deviation among the centres.

    Returns:
        ``(n_sims, n_samples - n_centres)`` at the ranked samples and ``(n_sims, 1)``
        at the truth.
    """
    dim = samples.shape[-1]

    def one(args: tuple[Array, Array]) -> tuple[Array, Array]:
        draws, truth = args
        centres, ranked = draws[:n_centres], draws[n_centres:]
        scale = centres.std(axis=0) * n_centres ** (-1.0 / (dim + 4))
        scale = jnp.where(scale > 0, scale, 1.0)
        c = centres / scale
        points = jnp.concatenate([ranked, truth[None]]) / scale
        sq = (
            jnp.sum(points**2, axis=1)[:, None]
            + jnp.sum(c**2, axis=1)[None, :]
            - 2.0 * points @ c.T
        )
        log_density = jax.nn.logsumexp(-0.5 * jnp.maximum(sq, 0.0), axis=1)
        return log_density[:-1], log_density[-1:]

    return jax.lax.map(one, (samples, theta), batch_size=KDE_BATCH)
