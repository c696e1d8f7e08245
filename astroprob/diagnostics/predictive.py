"""Posterior predictive checks: could the simulator have made this observation?

For each observation, data sets are simulated from parameters drawn from its
posterior, and test statistics ``T`` of the observation are compared with their
distribution over the simulated data sets. The posterior predictive p-value of
a statistic is the (two-sided, or upper for distances) tail probability of the
observed ``T``; an observation unlike anything the simulator makes, for example
one outside the training distribution, gets tiny p-values and is flagged.

The default statistics are the mean, standard deviation, minimum and maximum of
the observation's entries, and ``distance``: the sum over entries of the squared
standardised deviation from the predictive mean, tested one-sided (only large
distances are atypical). User statistics are functions of one observation,
traced with ``jax.vmap``.

References:
    A. Gelman, X.-L. Meng and H. Stern, "Posterior predictive assessment of model
    fitness via realized discrepancies", Statistica Sinica 6, 733 (1996).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array

from astroprob.diagnostics import _checks

__all__ = ["DEFAULT_STATISTICS", "PredictiveCheckResult", "predictive_check"]

CONSISTENT = "consistent"
ATYPICAL = "atypical"

DEFAULT_STATISTICS: dict[str, Callable[[Array], Array]] = {
    "mean": jnp.mean,
    "std": jnp.std,
    "min": jnp.min,
    "max": jnp.max,
}
"""Statistics of one observation used when none are given (plus ``distance``)."""


@dataclass(frozen=True, eq=False)
class PredictiveCheckResult:
    """Posterior predictive p-values per observation and statistic.

    Attributes:
        names: (S,) statistic names; ``distance`` is always last.
        observed: (n_obs, S) statistics of the observations.
        p_value: (n_obs, S) predictive p-values (two-sided; upper for ``distance``).
        num_valid: (n_obs,) predictive simulations used (finite ones).
        num_invalid: (n_obs,) predictive simulations dropped for NaN or inf.
        alpha: family-wise level per observation; each statistic at ``alpha / S``.
        flagged: (n_obs,) whether some statistic is atypical.
        verdict: (n_obs,) ``"consistent"`` or ``"atypical"``.
    """

    names: tuple[str, ...]
    observed: np.ndarray
    p_value: np.ndarray
    num_valid: np.ndarray
    num_invalid: np.ndarray
    alpha: float
    flagged: np.ndarray
    verdict: tuple[str, ...]

    def to_dict(self) -> dict:
        """JSON-ready p-values and verdicts, one entry per observation."""
        return {
            "diagnostic": "predictive_check",
            "alpha": self.alpha,
            "statistics": list(self.names),
            "observations": [
                {
                    "verdict": self.verdict[i],
                    "p_value": dict(zip(self.names, map(float, self.p_value[i]), strict=True)),
                    "observed": dict(zip(self.names, map(float, self.observed[i]), strict=True)),
                    "num_valid": int(self.num_valid[i]),
                    "num_invalid": int(self.num_invalid[i]),
                }
                for i in range(len(self.verdict))
            ],
        }


def predictive_check(
    x_obs: ArrayLike,
    x_pred: ArrayLike,
    *,
    statistics: Mapping[str, Callable[[Array], Array]] | None = None,
    alpha: float = 0.05,
) -> PredictiveCheckResult:
    """Posterior predictive p-values of observations against simulations from their posteriors.

    Args:
        x_obs: (n_obs, *obs_shape) observations.
        x_pred: (n_obs, n_pred, *obs_shape) data simulated from posterior draws of
            each observation. Non-finite simulations are dropped and counted.
        statistics: scalar statistics of one observation ``(*obs_shape) -> ()``, by
            name; default `DEFAULT_STATISTICS`. ``distance`` is always added.
        alpha: family-wise level per observation.

    Returns:
        A `PredictiveCheckResult`.

    Raises:
        ValueError: on mismatched shapes, non-finite observations, or fewer than
            two finite predictive simulations for some observation.
        TypeError: on non-numeric arrays or non-callable statistics.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> x_pred = jax.random.normal(jax.random.key(0), (2, 500, 3))
        >>> x_obs = jnp.array([[0.1, -0.3, 0.2], [8.0, 9.0, 7.5]])  # the second is an outlier
        >>> predictive_check(x_obs, x_pred).verdict
        ('consistent', 'atypical')
    """
    x_obs = _checks.as_real_array("x_obs", x_obs)
    x_pred = _checks.as_real_array("x_pred", x_pred)
    alpha = _checks.check_alpha(alpha)
    if x_obs.ndim < 1 or x_pred.ndim != x_obs.ndim + 1:
        raise ValueError(
            f"x_pred: expected shape (n_obs, n_pred, *obs_shape) for x_obs of shape "
            f"(n_obs, *obs_shape) = {x_obs.shape}; got {x_pred.shape}"
        )
    n_obs, obs_shape = x_obs.shape[0], x_obs.shape[1:]
    if x_pred.shape[0] != n_obs or x_pred.shape[2:] != obs_shape:
        raise ValueError(
            f"x_pred: expected shape ({n_obs}, n_pred, {', '.join(map(str, obs_shape))}) to "
            f"match x_obs {x_obs.shape}; got {x_pred.shape}"
        )
    _checks.check_finite("x_obs", x_obs)
    statistics = dict(DEFAULT_STATISTICS if statistics is None else statistics)
    for name, fn in statistics.items():
        if not callable(fn):
            raise TypeError(f"statistics[{name!r}]: expected a callable; got {type(fn).__name__}")
    if "distance" in statistics:
        raise ValueError("statistics: 'distance' is reserved for the built-in distance statistic")

    valid = np.isfinite(x_pred.reshape(n_obs, x_pred.shape[1], -1)).all(axis=-1)
    num_valid = valid.sum(axis=1)
    if num_valid.min() < 2:
        raise ValueError(
            "x_pred: expected at least 2 finite predictive simulations per observation; "
            f"observations {np.flatnonzero(num_valid < 2).tolist()[:10]} have fewer"
        )
    # Replace invalid simulations by a valid one of the same observation; they are masked out.
    first_valid = np.argmax(valid, axis=1)
    filled = np.where(
        valid.reshape(valid.shape + (1,) * len(obs_shape)),
        x_pred,
        x_pred[np.arange(n_obs), first_valid][:, None],
    ).astype(np.float32)

    names = (*statistics, "distance")
    observed, replicated = _statistics(
        tuple(statistics.values()),
        jnp.asarray(x_obs, jnp.float32),
        jnp.asarray(filled),
        jnp.asarray(valid),
    )
    observed, replicated = np.asarray(observed, np.float64), np.asarray(replicated, np.float64)
    if not np.isfinite(observed).all() or not np.isfinite(replicated[valid]).all():
        raise ValueError("statistics: returned NaN or inf for some observation or simulation")
    mask = valid[:, :, None]
    n = num_valid[:, None]
    at_least = ((replicated >= observed[:, None, :]) & mask).sum(axis=1)
    at_most = ((replicated <= observed[:, None, :]) & mask).sum(axis=1)
    upper = (1.0 + at_least) / (1.0 + n)
    lower = (1.0 + at_most) / (1.0 + n)
    p_value = np.minimum(1.0, 2.0 * np.minimum(upper, lower))
    p_value[:, -1] = upper[:, -1]  # distance: only large values are atypical
    flagged = (p_value <= alpha / len(names)).any(axis=1)
    return PredictiveCheckResult(
        names=names,
        observed=observed,
        p_value=p_value,
        num_valid=num_valid,
        num_invalid=x_pred.shape[1] - num_valid,
        alpha=alpha,
        flagged=flagged,
        verdict=tuple(ATYPICAL if f else CONSISTENT for f in flagged),
    )


@functools.partial(jax.jit, static_argnums=0)
def _statistics(
    functions: tuple[Callable[[Array], Array], ...], x_obs: Array, x_pred: Array, valid: Array
) -> tuple[Array, Array]:
    """User statistics plus the standardised distance: ``(n_obs, S)`` and ``(n_obs, n_pred, S)``.

    The predictive mean and standard deviation of each entry use the valid simulations only.
    """
    n_obs, n_pred = x_pred.shape[:2]
    flat_pred = x_pred.reshape(n_obs, n_pred, -1)
    flat_obs = x_obs.reshape(n_obs, -1)
    weight = valid[:, :, None].astype(flat_pred.dtype)
    count = weight.sum(axis=1, keepdims=True)
    mean = (weight * flat_pred).sum(axis=1, keepdims=True) / count
    var = (weight * (flat_pred - mean) ** 2).sum(axis=1, keepdims=True) / count
    std = jnp.where(var > 0, jnp.sqrt(jnp.where(var > 0, var, 1.0)), 1.0)

    def distance(flat: Array) -> Array:
        return jnp.sum(((flat - mean) / std) ** 2, axis=-1)

    def apply(x: Array) -> Array:
        return jnp.stack([jnp.asarray(fn(x), jnp.float32).reshape(()) for fn in functions])

    if functions:
        obs_stats = jax.vmap(apply)(x_obs)
        pred_stats = jax.vmap(jax.vmap(apply))(x_pred)
    else:
        obs_stats = jnp.zeros((n_obs, 0))
        pred_stats = jnp.zeros((n_obs, n_pred, 0))
    obs_stats = jnp.concatenate([obs_stats, distance(flat_obs[:, None, :])], axis=-1)
    pred_stats = jnp.concatenate([pred_stats, distance(flat_pred)[..., None]], axis=-1)
    return obs_stats, pred_stats
