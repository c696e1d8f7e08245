"""Simulation-based calibration (SBC): ranks of the true parameters among posterior draws.

If θ is drawn from the prior, x from the simulator, and ``L`` samples from the
posterior p(θ | x), then the number of samples below the true value (per
parameter, or for any function of θ such as the posterior log-density) is
uniform on ``{0, ..., L}``. `sbc` computes those ranks in one compiled call and
tests their uniformity with the exact ECDF test and simultaneous bands of
Säilynoja et al. (2022), the log gamma statistic of Modrák et al. (2023), and
chi-square and Kolmogorov-Smirnov summaries; see `astroprob.diagnostics._uniformity`.

References:
    S. Talts, M. Betancourt, D. Simpson, A. Vehtari and A. Gelman, "Validating
    Bayesian Inference Algorithms with Simulation-Based Calibration" (2018),
    https://arxiv.org/abs/1804.06788.

    T. Säilynoja, P.-C. Bürkner and A. Vehtari, "Graphical test for discrete
    uniformity and its applications in goodness-of-fit evaluation and multiple
    sample comparison", Statistics and Computing 32, 32 (2022),
    https://arxiv.org/abs/2103.10522.

    M. Modrák et al., "Simulation-based calibration checking for Bayesian
    computation: the choice of test quantities shapes sensitivity", Bayesian
    Analysis (2023), https://arxiv.org/abs/2211.02383.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array

from astroprob.diagnostics import _checks
from astroprob.diagnostics._uniformity import (
    CALIBRATED,
    RankUniformity,
    curves_dict,
    rank_uniformity,
    summary_dict,
)

__all__ = ["SBCResult", "sbc"]

ThetaFunction = Callable[[Array], ArrayLike]
"""``f(theta (n_sims, m, dim)) -> (n_sims, m)``: a scalar function of θ per simulation."""


@dataclass(frozen=True, eq=False)
class SBCResult:
    """Ranks and their uniformity tests, one column per parameter and per user function.

    Attributes:
        names: the ``P`` statistic names: parameter names, then function names.
        ranks: (n_sims, P) rank of each true value among the ``num_samples`` draws.
        num_samples: posterior draws per simulation ``L``; ranks lie in ``0..L``.
        test: the uniformity tests (`RankUniformity`): ECDF, simultaneous band at
            level ``alpha / P``, p-values, log gamma, chi-square, KS, moments.
        alpha: family-wise level; each statistic is tested at ``alpha / P``.
        verdict: (P,) ``"calibrated"``, ``"overconfident"``, ``"underconfident"``
            or ``"biased"`` per statistic.
    """

    names: tuple[str, ...]
    ranks: np.ndarray
    num_samples: int
    test: RankUniformity
    alpha: float
    verdict: tuple[str, ...]

    @property
    def calibrated(self) -> bool:
        """Whether no statistic's ranks depart from uniformity."""
        return all(v == CALIBRATED for v in self.verdict)

    @property
    def p_value(self) -> np.ndarray:
        """(P,) exact ECDF-test p-values (before the correction for ``P`` tests)."""
        return self.test.p_value

    @property
    def log_gamma(self) -> np.ndarray:
        """(P,) the log gamma statistic of each statistic's ranks."""
        return self.test.log_gamma

    def to_dict(self, *, include_ranks: bool = True) -> dict:
        """JSON-ready numbers: verdicts, tests per statistic, curves and (optionally) ranks."""
        out = {
            "diagnostic": "sbc",
            "alpha": self.alpha,
            "alpha_per_statistic": self.test.alpha,
            "num_simulations": int(self.ranks.shape[0]),
            "num_samples": self.num_samples,
            "chi2_dof": self.test.chi2_dof,
            "verdict": dict(zip(self.names, self.verdict, strict=True)),
            "statistics": summary_dict(self.test, self.names),
            "curves": curves_dict(self.test),
        }
        if include_ranks:
            out["ranks"] = self.ranks.tolist()
        return out


@jax.jit
def _marginal_ranks(samples: Array, theta: Array) -> Array:
    """(n_sims, dim) ranks of ``theta`` among ``samples`` along the samples axis."""
    truth = theta[:, None, :]
    # One pass: 2 per sample below, 1 per tie; rank = below + (ties + parity) // 2.
    twice = jnp.sum(_score(samples, truth), axis=1, dtype=jnp.int32)
    return (twice + _parity(twice)) // 2


def ranks_of_values(values: Array, truth: Array) -> Array:
    """Ranks of ``truth (n_sims, 1)`` among ``values (n_sims, L)``: how many are smaller.

    Exact ties (probability zero for continuous posteriors) are split: half
    count as smaller, the odd one by the parity of the simulation's index, so
    that the ranks stay uniform.

    Returns:
        (n_sims,) int32 ranks in ``0..L``.
    """
    twice = jnp.sum(_score(values, truth), axis=-1, dtype=jnp.int32)
    return (twice + _parity(twice)) // 2


def _score(values: Array, truth: Array) -> Array:
    return jnp.where(values < truth, 2, jnp.where(values == truth, 1, 0)).astype(jnp.int32)


def _parity(below: Array) -> Array:
    index = jnp.arange(below.shape[0], dtype=jnp.int32) % 2
    return index.reshape((-1,) + (1,) * (below.ndim - 1))


_ranks_of_values = jax.jit(ranks_of_values)


def parameter_names(names: Sequence[str] | None, dim: int) -> tuple[str, ...]:
    """``names`` checked against ``dim``, or ``("theta_1", ..., "theta_<dim>")``."""
    if names is None:
        return tuple(f"theta_{j}" for j in range(1, dim + 1))
    names = tuple(str(n) for n in names)
    if len(names) != dim:
        raise ValueError(f"names: expected {dim} parameter names; got {len(names)}")
    return names


def sbc(
    samples: ArrayLike,
    theta: ArrayLike,
    *,
    functions: Mapping[str, ThetaFunction] | None = None,
    names: Sequence[str] | None = None,
    alpha: float = 0.05,
    num_points: int | None = None,
    num_bins: int | None = None,
) -> SBCResult:
    """Simulation-based calibration of posterior samples against the true parameters.

    Args:
        samples: (n_sims, n_samples, dim) posterior draws for each simulated
            observation, numpy or JAX.
        theta: (n_sims, dim) the parameters that generated each observation,
            drawn from the prior.
        functions: optional extra scalar statistics of θ, by name. Each is called
            as ``f(theta)`` with an array of shape ``(n_sims, m, dim)`` (once with
            the samples, ``m = n_samples``, once with the true values, ``m = 1``)
            and returns ``(n_sims, m)``; ``f(theta)[i]`` may depend on the
            observation ``i``, e.g. ``posterior.log_prob`` of a batched
            `Posterior`. Values may be infinite, not NaN.
        names: parameter names (default ``theta_1 ... theta_<dim>``).
        alpha: family-wise significance level; each of the ``P = dim +
            len(functions)`` statistics is tested at ``alpha / P`` (Bonferroni).
        num_points: ECDF evaluation points (default ``min(n_sims, n_samples)``).
        num_bins: bins of the chi-square summary (default up to 20, at least 5
            expected ranks per bin).

    Returns:
        An `SBCResult`, with a verdict per statistic.

    Raises:
        ValueError: on shapes that do not match, non-finite samples or θ, a
            function returning the wrong shape or NaN, or bad options.
        TypeError: on non-numeric arrays or non-callable functions.

    Warns:
        UserWarning: with fewer than 100 simulations or posterior samples.

    Examples:
        >>> import jax
        >>> key_theta, key_samples = jax.random.split(jax.random.key(0))
        >>> theta = jax.random.normal(key_theta, (200, 2))
        >>> prior_draws = jax.random.normal(key_samples, (200, 100, 2))  # the prior as posterior
        >>> result = sbc(prior_draws, theta)
        >>> result.verdict
        ('calibrated', 'calibrated')
    """
    samples, theta = _checks.check_samples_theta(samples, theta)
    alpha = _checks.check_alpha(alpha)
    n_sims, n_samples, dim = samples.shape
    if num_points is not None:
        num_points = _checks.check_int("num_points", num_points, minimum=1)
    if num_bins is not None:
        num_bins = _checks.check_int("num_bins", num_bins, minimum=2)
    names = parameter_names(names, dim)
    functions = dict(functions or {})
    for name, fn in functions.items():
        if not callable(fn):
            raise TypeError(f"functions[{name!r}]: expected a callable; got {type(fn).__name__}")
    _checks.warn_if_few(n_sims, n_samples, diagnostic="sbc")

    samples_j, theta_j = jnp.asarray(samples), jnp.asarray(theta)
    columns = [np.asarray(_marginal_ranks(samples_j, theta_j))]
    for name, fn in functions.items():
        on_samples = function_values(f"functions[{name!r}]", fn, samples_j, (n_sims, n_samples))
        on_truth = function_values(f"functions[{name!r}]", fn, theta_j[:, None, :], (n_sims, 1))
        columns.append(np.asarray(_ranks_of_values(on_samples, on_truth))[:, None])
    all_names = names + tuple(functions)
    if len(set(all_names)) != len(all_names):
        raise ValueError(f"functions: names must differ from each other and from {names}")
    ranks = np.concatenate(columns, axis=1).astype(np.int64)
    test = rank_uniformity(
        ranks,
        n_samples + 1,
        alpha=alpha / len(all_names),
        num_points=num_points,
        num_bins=num_bins,
    )
    return SBCResult(
        names=all_names,
        ranks=ranks,
        num_samples=n_samples,
        test=test,
        alpha=alpha,
        verdict=test.verdicts(),
    )


def function_values(name: str, fn: ThetaFunction, theta: Array, shape: tuple[int, int]) -> Array:
    values = np.asarray(fn(theta))
    if values.shape != shape:
        raise ValueError(
            f"{name}: expected the function to return shape {shape} for theta of shape "
            f"{tuple(theta.shape)}; got {values.shape}"
        )
    if np.isnan(values).any():
        raise ValueError(f"{name}: returned NaN for {int(np.isnan(values).sum())} values")
    return jnp.asarray(values, jnp.float32)
