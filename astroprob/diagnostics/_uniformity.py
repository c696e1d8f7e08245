"""Uniformity of discrete ranks: the ECDF test and its summaries, shared by SBC, coverage, TARP.

Every calibration diagnostic here reduces to ranks ``r`` in ``{0, ..., B - 1}``
that are uniform when the posterior is right. `rank_uniformity` computes, per
column of ranks, the exact ECDF test with its simultaneous band (`_ecdf`), the
log gamma statistic, a chi-square test on binned ranks, a Kolmogorov-Smirnov
statistic, and two standardised moments that say in which way the ranks are off:

- ``bias_z``: the mean of ``u = (r + 1/2) / B`` against 1/2, in standard errors.
  Positive: ranks too high, the true values lie above the posterior mass.
- ``dispersion_z``: the mean of ``(u - 1/2)^2`` against its value for uniform
  ranks, in standard errors. Positive: too many extreme ranks, the posterior is
  too narrow (overconfident); negative: too wide (underconfident).

Both use the exact moments of the discrete uniform distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from astroprob.diagnostics import _ecdf

CALIBRATED = "calibrated"
OVERCONFIDENT = "overconfident"
UNDERCONFIDENT = "underconfident"
BIASED = "biased"
VERDICTS = (CALIBRATED, OVERCONFIDENT, UNDERCONFIDENT, BIASED)
"""The words a verdict can take."""


@dataclass(frozen=True, eq=False)
class RankUniformity:
    """Uniformity tests of ``P`` columns of ``n`` ranks on ``{0, ..., B - 1}``.

    Attributes:
        grid: (K,) cut points as fractions ``c_k / B`` (the exact uniform ECDF there).
        ecdf: (P, K) empirical CDF of each column at ``grid``.
        band_lower: (K,) lower edge of the simultaneous band at level ``alpha``.
        band_upper: (K,) upper edge.
        alpha: the level of the band and of ``rejected``.
        p_value: (P,) exact p-value of the ECDF test.
        log_gamma: (P,) the log gamma statistic (more negative: less uniform).
        rejected: (P,) whether ``p_value <= alpha``.
        below_band: (P,) whether the ECDF dips below the band somewhere.
        above_band: (P,) whether it rises above the band somewhere.
        bias_z: (P,) standardised mean rank (see the module docstring).
        dispersion_z: (P,) standardised spread of the ranks.
        chi2: (P,) chi-square statistic of the binned ranks.
        chi2_dof: degrees of freedom of ``chi2``.
        chi2_p_value: (P,) its p-value.
        ks_statistic: (P,) largest distance between the ECDF and the uniform CDF.
        ks_p_value: (P,) Kolmogorov p-value (conservative for discrete ranks).
    """

    grid: np.ndarray
    ecdf: np.ndarray
    band_lower: np.ndarray
    band_upper: np.ndarray
    alpha: float
    p_value: np.ndarray
    log_gamma: np.ndarray
    rejected: np.ndarray
    below_band: np.ndarray
    above_band: np.ndarray
    bias_z: np.ndarray
    dispersion_z: np.ndarray
    chi2: np.ndarray
    chi2_dof: int
    chi2_p_value: np.ndarray
    ks_statistic: np.ndarray
    ks_p_value: np.ndarray

    def verdicts(self) -> tuple[str, ...]:
        """One verdict per column: calibrated, or the kind of departure the ranks show."""
        return tuple(
            classify(rejected=bool(r), bias_z=float(b), dispersion_z=float(d))
            for r, b, d in zip(self.rejected, self.bias_z, self.dispersion_z, strict=True)
        )


def classify(*, rejected: bool, bias_z: float, dispersion_z: float) -> str:
    """Name a departure from uniformity: a shift dominates (biased) or a spread does."""
    if not rejected:
        return CALIBRATED
    if abs(bias_z) >= abs(dispersion_z):
        return BIASED
    return OVERCONFIDENT if dispersion_z > 0 else UNDERCONFIDENT


def default_num_bins(n: int, num_values: int) -> int:
    """Chi-square bins: up to 20, at least 5 expected ranks in each, at least 2."""
    return int(max(2, min(20, num_values, n // 5)))


def rank_uniformity(
    ranks: np.ndarray,
    num_values: int,
    *,
    alpha: float,
    num_points: int | None = None,
    num_bins: int | None = None,
) -> RankUniformity:
    """Test each column of ``ranks`` ``(n, P)`` for uniformity on ``{0, ..., num_values - 1}``.

    Args:
        ranks: (n, P) integer ranks.
        num_values: number of possible rank values ``B``.
        alpha: level of the band and of the ``rejected`` flags (already corrected
            for multiple columns by the caller if it wishes).
        num_points: ECDF cut points ``K`` (default ``min(n, B - 1)``).
        num_bins: chi-square bins (default `default_num_bins`).

    Returns:
        The `RankUniformity` of the columns.
    """
    ranks = np.asarray(ranks, np.int64)
    n = ranks.shape[0]
    lattice = _ecdf.rank_lattice(n, num_values, num_points)
    counts = lattice.counts(ranks)
    p_value, log_gamma = _ecdf.p_values(lattice, counts)
    lo_band, hi_band = _ecdf.band(lattice, alpha)
    ecdf = counts / n

    b = float(num_values)
    u = (ranks + 0.5) / b - 0.5
    var_u = (b**2 - 1.0) / (12.0 * b**2)
    m4 = (b**2 - 1.0) * (3.0 * b**2 - 7.0) / (240.0 * b**4)
    bias_z = u.mean(axis=0) / np.sqrt(var_u / n)
    dispersion_z = ((u**2).mean(axis=0) - var_u) / np.sqrt((m4 - var_u**2) / n)

    bins = default_num_bins(n, num_values) if num_bins is None else int(num_bins)
    bin_of_value = np.arange(num_values) * bins // num_values
    expected = np.bincount(bin_of_value, minlength=bins) / b * n
    observed = np.stack([np.bincount(col * bins // num_values, minlength=bins) for col in ranks.T])
    chi2 = ((observed - expected) ** 2 / expected).sum(axis=1)
    chi2_p = stats.chi2.sf(chi2, bins - 1)

    ks = np.abs(ecdf - lattice.z).max(axis=1)
    ks_p = stats.kstwo.sf(ks, n)
    return RankUniformity(
        grid=lattice.z.copy(),
        ecdf=ecdf,
        band_lower=lo_band,
        band_upper=hi_band,
        alpha=float(alpha),
        p_value=p_value,
        log_gamma=log_gamma,
        rejected=p_value <= alpha,
        below_band=(ecdf < lo_band).any(axis=1),
        above_band=(ecdf > hi_band).any(axis=1),
        bias_z=bias_z,
        dispersion_z=dispersion_z,
        chi2=chi2,
        chi2_dof=bins - 1,
        chi2_p_value=chi2_p,
        ks_statistic=ks,
        ks_p_value=ks_p,
    )


def summary_dict(test: RankUniformity, names: tuple[str, ...]) -> dict:
    """The per-column numbers of ``test`` as a JSON-ready dict keyed by ``names``."""
    out = {}
    for i, name in enumerate(names):
        out[name] = {
            "p_value": float(test.p_value[i]),
            "log_gamma": _finite_or_none(test.log_gamma[i]),
            "bias_z": float(test.bias_z[i]),
            "dispersion_z": float(test.dispersion_z[i]),
            "chi2": float(test.chi2[i]),
            "chi2_p_value": float(test.chi2_p_value[i]),
            "ks_statistic": float(test.ks_statistic[i]),
            "ks_p_value": float(test.ks_p_value[i]),
            "below_band": bool(test.below_band[i]),
            "above_band": bool(test.above_band[i]),
        }
    return out


def curves_dict(test: RankUniformity) -> dict:
    """The ECDF curves and the band as JSON-ready lists."""
    return {
        "grid": test.grid.tolist(),
        "ecdf": test.ecdf.tolist(),
        "band_lower": test.band_lower.tolist(),
        "band_upper": test.band_upper.tolist(),
    }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
