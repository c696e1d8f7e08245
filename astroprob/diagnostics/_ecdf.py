"""The graphical ECDF test of uniformity for discrete ranks, with exact probabilities.

SBC ranks, HPD credibility ranks and TARP ranks are all counts ``r`` in
``{0, ..., B - 1}`` that are uniform when the posterior is right. Their empirical
CDF is evaluated at ``K`` cut points ``c_1 < ... < c_K`` of that lattice: the
number of ranks below ``c_k`` is ``N F_k``, and under uniformity each ``N F_k``
is Binomial(N, z_k) with ``z_k = c_k / B`` exactly, and jointly the counts are
the cumulative sums of a multinomial. Each point gets the two-sided tail
statistic

    s_k = min(1, 2 min(P(X <= N F_k), P(X >= N F_k))),   X ~ Binomial(N, z_k),

and the curve the statistic ``gamma = min_k s_k`` (Modrák et al. 2023 report
``log gamma``). The test rejects when ``gamma`` is small; its p-value
``P(gamma <= gamma_obs)`` is computed exactly by a forward recursion over the
cut points (the counts form a Markov chain: given ``j`` ranks below ``c_{k-1}``,
the number between ``c_{k-1}`` and ``c_k`` is Binomial(N - j, p_k) with
``p_k = (z_k - z_{k-1}) / (1 - z_{k-1})``), restricted to the counts whose
``s_k`` exceeds ``gamma_obs``. The simultaneous ``1 - alpha`` band of
Säilynoja et al. (2022) is the set of counts with ``s_k > gamma_alpha`` where
``gamma_alpha`` is the largest level with ``P(gamma <= gamma_alpha) <= alpha``;
it is found by bisection on ``log gamma`` between ``alpha / K`` (a Bonferroni
bound) and ``alpha``, then exactly among the attainable values of ``gamma``.
An ECDF leaves the band exactly when the test rejects.

The recursion runs in numpy float64 over a narrow window of counts per cut point
(about ``+-9`` binomial standard deviations), so it costs milliseconds for
``N = K = 1000``; bands are cached per ``(N, B, K, alpha)``.

References:
    T. Säilynoja, P.-C. Bürkner and A. Vehtari, "Graphical test for discrete
    uniformity and its applications in goodness-of-fit evaluation and multiple
    sample comparison", Statistics and Computing 32, 32 (2022),
    https://arxiv.org/abs/2103.10522.

    M. Modrák, A. H. Moon, S. Kim, P. Bürkner, N. Huurre, K. Faltejsková,
    A. Gelman and A. Vehtari, "Simulation-based calibration checking for Bayesian
    computation: the choice of test quantities shapes sensitivity", Bayesian
    Analysis (2023), https://arxiv.org/abs/2211.02383.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy import special, stats

S_FLOOR = 1e-15
"""Tail statistics below this are not resolved; p-values there are Bonferroni bounds."""
_BISECTION_POINTS = 16
_BISECTION_ROUNDS = 4


@dataclass(frozen=True, eq=False)
class RankLattice:
    """Cut points and tail statistics for ``n`` ranks on ``{0, ..., num_values - 1}``.

    Attributes:
        n: number of ranks (simulations).
        num_values: number of possible rank values ``B``.
        cuts: (K,) int cut points ``c_k`` in ``1..B-1``.
        z: (K,) float64 ``c_k / B``, the exact probabilities ``P(r < c_k)``.
        offset: (K,) int, the count stored in column 0 of ``s``.
        s: (K, W) float64 tail statistic of counts ``offset_k + w`` (0 outside ``0..n``).
    """

    n: int
    num_values: int
    cuts: np.ndarray
    z: np.ndarray
    offset: np.ndarray
    s: np.ndarray

    @property
    def num_points(self) -> int:
        """Number of cut points ``K``."""
        return int(self.z.size)

    def counts(self, ranks: np.ndarray) -> np.ndarray:
        """ECDF counts ``#{r < c_k}`` of ranks ``(n, P)``; returns ``(P, K)`` int."""
        sorted_ranks = np.sort(np.asarray(ranks).T, axis=-1)
        return np.stack([np.searchsorted(row, self.cuts, side="left") for row in sorted_ranks])

    def statistic(self, counts: np.ndarray) -> np.ndarray:
        """Tail statistics ``s_k`` of counts ``(P, K)``; returns ``(P, K)`` float64.

        Counts outside the stored window get their exact (tiny) value from scipy.
        """
        counts = np.asarray(counts)
        col = counts - self.offset
        inside = (col >= 0) & (col < self.s.shape[1])
        rows = np.broadcast_to(np.arange(self.num_points), counts.shape)
        s = np.where(inside, self.s[rows, np.clip(col, 0, self.s.shape[1] - 1)], 0.0)
        if not inside.all():
            z = np.broadcast_to(self.z, counts.shape)
            exact = _tail_statistic(counts, self.n, z)
            s = np.where(inside, s, np.minimum(exact, S_FLOOR))
        return s

    def windows(self, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The counts with ``s_k > gamma``: ``(lo, hi)``, each ``(G, K)``; ``hi < lo`` if none."""
        gamma = np.maximum(np.asarray(gamma, np.float64), S_FLOOR)
        inside = self.s[None] > gamma[:, None, None]
        width = self.s.shape[1]
        first = np.argmax(inside, axis=-1)
        last = width - 1 - np.argmax(inside[..., ::-1], axis=-1)
        empty = ~inside.any(axis=-1)
        lo = np.where(empty, 1, first) + self.offset
        hi = np.where(empty, 0, last) + self.offset
        return lo, hi


def _tail_statistic(counts: np.ndarray, n: int, z: np.ndarray) -> np.ndarray:
    """``min(1, 2 min(P(X <= c), P(X >= c)))`` for X ~ Binomial(n, z), by scipy."""
    lower = stats.binom.cdf(counts, n, z)
    upper = stats.binom.sf(counts - 1, n, z)
    return np.minimum(1.0, 2.0 * np.minimum(lower, upper))


def _log_factorials(n: int) -> np.ndarray:
    return special.gammaln(np.arange(n + 1, dtype=np.float64) + 1.0)


@functools.lru_cache(maxsize=64)
def rank_lattice(n: int, num_values: int, num_points: int | None = None) -> RankLattice:
    """The lattice of cut points for ``n`` ranks with ``num_values`` possible values.

    Args:
        n: number of ranks, >= 1.
        num_values: number of possible rank values ``B`` (``n_samples + 1`` for SBC), >= 2.
        num_points: number of cut points ``K``; default ``min(n, B - 1)``. They are
            spread evenly over ``1..B-1``.

    Returns:
        The cached `RankLattice`.
    """
    max_points = num_values - 1
    k = min(n, max_points) if num_points is None else min(num_points, max_points)
    cuts = np.unique(np.round(np.arange(1, k + 1) * num_values / (k + 1)).astype(np.int64))
    cuts = cuts[(cuts >= 1) & (cuts <= num_values - 1)]
    z = cuts / num_values
    sd = np.sqrt(n * z * (1.0 - z))
    reach = np.ceil(9.0 * sd + 25.0).astype(np.int64)
    lo = np.maximum(0, np.floor(n * z).astype(np.int64) - reach)
    hi = np.minimum(n, np.ceil(n * z).astype(np.int64) + reach)
    width = int((hi - lo).max()) + 1
    c = lo[:, None] + np.arange(width)[None, :]
    valid = c <= n
    logfact = _log_factorials(n)
    cc = np.clip(c, 0, n)
    log_pmf = (
        logfact[n]
        - logfact[cc]
        - logfact[n - cc]
        + cc * np.log(z)[:, None]
        + (n - cc) * np.log1p(-z)[:, None]
    )
    pmf = np.where(valid, np.exp(log_pmf), 0.0)
    below = np.cumsum(pmf, axis=1)  # P(X <= c), less the negligible mass below lo
    above = np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1]  # P(X >= c), less the mass above hi
    s = np.where(valid, np.minimum(1.0, 2.0 * np.minimum(below, above)), 0.0)
    for array in (cuts, z, lo, s):
        array.setflags(write=False)
    return RankLattice(n=n, num_values=num_values, cuts=cuts, z=z, offset=lo, s=s)


def interior_probability(lattice: RankLattice, gamma: np.ndarray) -> np.ndarray:
    """``P(s_k > gamma for every k)`` under uniform ranks, for each ``gamma`` ``(G,)``."""
    gamma = np.atleast_1d(np.asarray(gamma, np.float64))
    lo, hi = lattice.windows(gamma)
    result = np.zeros(gamma.shape)
    alive = (hi >= lo).all(axis=1)
    if not alive.any():
        return result
    lo, hi = lo[alive], hi[alive]
    n, z = lattice.n, lattice.z
    logfact = _log_factorials(n)
    # Forward recursion over the union window of all gammas; each row keeps its own.
    v = np.ones((lo.shape[0], 1))
    prev_lo, prev_hi, z_prev = 0, 0, 0.0
    for k in range(lattice.num_points):
        p = (z[k] - z_prev) / (1.0 - z_prev)
        j = np.arange(prev_lo, prev_hi + 1)
        rem = n - j
        mean, sd = n * p, math.sqrt(n * p * (1.0 - p))
        m_max = int(min(n - prev_lo, math.ceil(mean + 12.0 * sd + 25.0)))
        m = np.arange(m_max + 1)
        ok = m[None, :] <= rem[:, None]
        mm = np.minimum(m[None, :], rem[:, None])
        log_pmf = (
            logfact[rem][:, None]
            - logfact[mm]
            - logfact[rem[:, None] - mm]
            + mm * math.log(p)
            + (rem[:, None] - mm) * math.log1p(-p)
        )
        pmf = np.where(ok, np.exp(log_pmf), 0.0)
        # Transition matrix T[j, j + m] = pmf[j, m]: a row stride of one more than the
        # row length shifts each row of pmf one column further right.
        n_from, n_to = j.size, j.size + m_max
        transition = np.zeros(n_from * (n_to + 1))
        step = transition.strides[0]
        band = as_strided(transition, shape=(n_from, m_max + 1), strides=((n_to + 2) * step, step))
        band[...] = pmf
        transition = transition.reshape(n_from, n_to + 1)[:, :n_to]
        new = v @ transition  # counts prev_lo .. prev_hi + m_max
        new_lo, new_hi = int(lo[:, k].min()), int(hi[:, k].max())
        counts = np.arange(new_lo, new_hi + 1)
        take = np.clip(counts - prev_lo, 0, n_to - 1)
        reachable = (counts >= prev_lo) & (counts < prev_lo + n_to)
        new = np.where(reachable[None, :], new[:, take], 0.0)
        mask = (counts[None, :] >= lo[:, k : k + 1]) & (counts[None, :] <= hi[:, k : k + 1])
        v = np.where(mask, new, 0.0)
        prev_lo, prev_hi, z_prev = new_lo, new_hi, z[k]
    result[alive] = v.sum(axis=1)
    return result


def p_values(lattice: RankLattice, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact p-values ``P(gamma <= gamma_obs)`` of ECDF counts ``(P, K)``.

    Returns:
        ``(p_value, log_gamma)``, each ``(P,)``. Below ``S_FLOOR`` the p-value is the
        Bonferroni bound ``min(1, K gamma_obs)``.
    """
    s = lattice.statistic(counts)
    gamma = s.min(axis=1)
    with np.errstate(divide="ignore"):
        log_gamma = np.log(gamma)
    p = np.empty(gamma.shape)
    resolved = gamma >= S_FLOOR
    if resolved.any():
        p[resolved] = 1.0 - interior_probability(lattice, gamma[resolved])
    p[~resolved] = np.minimum(1.0, lattice.num_points * gamma[~resolved])
    return np.clip(p, 0.0, 1.0), log_gamma


@functools.lru_cache(maxsize=256)
def _adjusted_gamma(lattice: RankLattice, alpha: float) -> float:
    if 1.0 - interior_probability(lattice, np.array([alpha]))[0] <= alpha:
        return alpha
    # Bisection on log gamma narrows the bracket; P(gamma <= lo) <= alpha < P(gamma <= hi).
    lo, hi = math.log(alpha / lattice.num_points), math.log(alpha)
    for _ in range(_BISECTION_ROUNDS):
        grid = np.linspace(lo, hi, _BISECTION_POINTS)
        rejection = 1.0 - interior_probability(lattice, np.exp(grid))
        best = int(np.flatnonzero(rejection <= alpha).max())
        lo, hi = grid[best], grid[min(best + 1, grid.size - 1)]
    lo, hi = math.exp(lo), math.exp(hi)
    # gamma only takes the values in the table: test those inside the bracket, so that
    # the band and the test agree exactly.
    candidates = np.unique(lattice.s[(lattice.s >= lo) & (lattice.s < hi)])
    best_value = lo
    for start in range(0, candidates.size, 64):
        chunk = candidates[start : start + 64]
        # P(gamma <= g) = 1 - P(all s_k > g).
        ok = chunk[1.0 - interior_probability(lattice, chunk) <= alpha]
        if ok.size:
            best_value = max(best_value, float(ok.max()))
    return best_value


def adjusted_gamma(lattice: RankLattice, alpha: float) -> float:
    """The largest attainable ``gamma_alpha`` with ``P(gamma <= gamma_alpha) <= alpha``."""
    return _adjusted_gamma(lattice, float(alpha))


def band(lattice: RankLattice, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Simultaneous ``1 - alpha`` band of the ECDF: ``(lower, upper)`` fractions, ``(K,)`` each.

    An ECDF lies inside at every cut point exactly when its test does not reject at
    level ``alpha``.
    """
    lo, hi = lattice.windows(np.array([adjusted_gamma(lattice, alpha)]))
    return lo[0] / lattice.n, hi[0] / lattice.n
