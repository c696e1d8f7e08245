"""Thin wrappers that run the array-level diagnostics on a trained estimator and its task.

Each wrapper simulates a fresh test set from the prior and the simulator with
the given key (never the training data), draws posterior samples for every
test observation in batches of a fixed size (so the sampler compiles once), and
calls the pure diagnostic on the arrays. An estimator is anything with
``posterior(x)`` returning an object with ``sample(key, n)`` and
``log_prob(theta)`` for a batch of observations, as `astroprob.NPE` does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, PRNGKeyArray

from astroprob.diagnostics import _checks
from astroprob.diagnostics.contraction import ContractionResult, z_score_contraction
from astroprob.diagnostics.coverage import CoverageResult, expected_coverage
from astroprob.diagnostics.predictive import PredictiveCheckResult, predictive_check
from astroprob.diagnostics.sbc import SBCResult, sbc
from astroprob.diagnostics.tarp import TARPResult, tarp
from astroprob.tasks._task import Task

__all__ = [
    "TestSet",
    "batched_log_prob",
    "run_expected_coverage",
    "run_predictive_check",
    "run_sbc",
    "run_tarp",
    "run_z_score_contraction",
    "sample_posteriors",
    "simulate_test_set",
]

DEFAULT_BATCH_SIZE = 100
"""Observations per posterior call."""
PAD_LIMIT = 2_000_000
"""A short set of observations is padded up to a full batch (so the compiled sampler of
the test set is reused) when a full batch holds at most this many samples."""


@dataclass(frozen=True, eq=False)
class TestSet:
    """Held-out simulations and the estimator's posterior samples for them.

    Attributes:
        theta: (n, dim) parameters drawn from the prior.
        x: (n, *obs_shape) their simulations.
        samples: (n, n_samples, dim) posterior draws for each simulation.
        num_invalid: simulations dropped because they held NaN or inf.
    """

    __test__ = False  # not a pytest test class

    theta: np.ndarray
    x: np.ndarray
    samples: np.ndarray
    num_invalid: int


def _check_estimator(estimator: Any) -> None:
    if not callable(getattr(estimator, "posterior", None)):
        raise TypeError(
            "estimator: expected a trained estimator with a posterior(x) method (e.g. "
            f"astroprob.NPE); got {type(estimator).__name__}"
        )


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def _padded(x: np.ndarray, size: int) -> np.ndarray:
    """Pad a short last batch by repeating its first row, so every call has one shape."""
    if len(x) == size:
        return x
    return np.concatenate([x, np.repeat(x[:1], size - len(x), axis=0)])


def sample_posteriors(
    key: PRNGKeyArray,
    estimator: Any,
    x: ArrayLike,
    num_samples: int,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Posterior samples ``(n, num_samples, dim)`` for observations ``x (n, *obs_shape)``.

    Observations go to ``estimator.posterior`` in batches of ``batch_size`` (the
    last one padded, so one compiled sampler serves every batch), each with its
    own key folded in from ``key``.
    """
    _check_estimator(estimator)
    num_samples = _checks.check_int("num_samples", num_samples, minimum=1)
    batch_size = _checks.check_int("batch_size", batch_size, minimum=1)
    x = np.asarray(x)
    size = batch_size if batch_size * num_samples <= PAD_LIMIT else min(batch_size, len(x))
    out = []
    for i, (start, stop) in enumerate(_batches(len(x), size)):
        posterior = estimator.posterior(_padded(x[start:stop], size))
        draws = posterior.sample(jax.random.fold_in(key, i), num_samples)
        out.append(np.asarray(draws)[: stop - start])
    return np.concatenate(out)


def batched_log_prob(
    estimator: Any, x: ArrayLike, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> Callable[[ArrayLike], np.ndarray]:
    """``log_prob(theta (n, m, dim)) -> (n, m)``: the estimator's posterior density, in batches.

    Row ``i`` of ``theta`` is evaluated under the posterior of observation ``x[i]``;
    the result can be passed as ``log_prob`` to `expected_coverage` or as a
    function to `sbc`.
    """
    _check_estimator(estimator)
    x = np.asarray(x)
    size = min(batch_size, len(x))
    posteriors = [
        (start, stop, estimator.posterior(_padded(x[start:stop], size)))
        for start, stop in _batches(len(x), size)
    ]

    def log_prob(theta: ArrayLike) -> np.ndarray:
        theta = np.asarray(theta)
        if theta.ndim != 3 or theta.shape[0] != len(x):
            raise ValueError(f"theta: expected shape ({len(x)}, m, dim); got {theta.shape}")
        out = []
        for start, stop, posterior in posteriors:
            lp = posterior.log_prob(jnp.asarray(_padded(theta[start:stop], size)))
            out.append(np.asarray(lp)[: stop - start])
        return np.concatenate(out)

    return log_prob


def simulate_test_set(
    key: PRNGKeyArray,
    estimator: Any,
    task: Task,
    n: int,
    *,
    num_samples: int = 1000,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> TestSet:
    """Simulate ``n`` fresh (θ, x) pairs and draw posterior samples for each.

    Simulations with NaN or inf are dropped, counted in ``num_invalid`` and
    reported with a warning (the diagnostics then condition on valid data).

    Raises:
        TypeError: if ``task`` is not a Task or ``estimator`` has no ``posterior``.
        ValueError: if no valid simulation is left.
    """
    if not isinstance(task, Task):
        raise TypeError(f"task: expected an astroprob Task; got {type(task).__name__}")
    _check_estimator(estimator)
    n = _checks.check_int("n", n, minimum=1)
    key_sim, key_post = jax.random.split(key)
    theta, x = task.simulate(key_sim, n)
    theta, x = np.asarray(theta), np.asarray(x)
    finite = np.isfinite(theta).all(axis=1) & np.isfinite(x.reshape(n, -1)).all(axis=1)
    num_invalid = int((~finite).sum())
    if num_invalid:
        warnings.warn(
            f"{num_invalid} of {n} test simulations contain NaN or inf and are left out",
            UserWarning,
            stacklevel=2,
        )
        theta, x = theta[finite], x[finite]
    if len(theta) == 0:
        raise ValueError("n: every test simulation held NaN or inf; nothing to test")
    samples = sample_posteriors(key_post, estimator, x, num_samples, batch_size=batch_size)
    return TestSet(theta=theta, x=x, samples=samples, num_invalid=num_invalid)


def run_sbc(
    key: PRNGKeyArray,
    estimator: Any,
    task: Task,
    *,
    n: int = 1000,
    num_samples: int = 1000,
    log_prob: bool = True,
    alpha: float = 0.05,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> SBCResult:
    """`sbc` on ``n`` fresh simulations; with ``log_prob``, also ranks the posterior log-density."""
    test = simulate_test_set(
        key, estimator, task, n, num_samples=num_samples, batch_size=batch_size
    )
    functions = (
        {"log_prob": batched_log_prob(estimator, test.x, batch_size=batch_size)}
        if log_prob
        else None
    )
    return sbc(
        test.samples, test.theta, functions=functions, names=task.parameter_names, alpha=alpha
    )


def run_expected_coverage(
    key: PRNGKeyArray,
    estimator: Any,
    task: Task,
    *,
    n: int = 1000,
    num_samples: int = 1000,
    use_log_prob: bool = True,
    alpha: float = 0.05,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> CoverageResult:
    """`expected_coverage` on ``n`` fresh simulations (HPD regions of the estimator's density)."""
    test = simulate_test_set(
        key, estimator, task, n, num_samples=num_samples, batch_size=batch_size
    )
    log_prob = batched_log_prob(estimator, test.x, batch_size=batch_size) if use_log_prob else None
    return expected_coverage(test.samples, test.theta, log_prob=log_prob, alpha=alpha)


def run_tarp(
    key: PRNGKeyArray,
    estimator: Any,
    task: Task,
    *,
    n: int = 1000,
    num_samples: int = 1000,
    alpha: float = 0.05,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> TARPResult:
    """`tarp` on ``n`` fresh simulations."""
    key_test, key_tarp = jax.random.split(key)
    test = simulate_test_set(
        key_test, estimator, task, n, num_samples=num_samples, batch_size=batch_size
    )
    return tarp(key_tarp, test.samples, test.theta, alpha=alpha)


def run_z_score_contraction(
    key: PRNGKeyArray,
    estimator: Any,
    task: Task,
    *,
    n: int = 1000,
    num_samples: int = 1000,
    alpha: float = 0.05,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ContractionResult:
    """`z_score_contraction` on ``n`` fresh simulations (prior variance from ``theta``)."""
    test = simulate_test_set(
        key, estimator, task, n, num_samples=num_samples, batch_size=batch_size
    )
    return z_score_contraction(test.samples, test.theta, names=task.parameter_names, alpha=alpha)


def run_predictive_check(
    key: PRNGKeyArray,
    estimator: Any,
    task: Task,
    x_obs: ArrayLike,
    *,
    num_samples: int = 500,
    statistics: Mapping[str, Callable[[Array], Array]] | None = None,
    alpha: float = 0.05,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> PredictiveCheckResult:
    """`predictive_check` of observations ``x_obs`` (one, or a batch ``(n_obs, *obs_shape)``).

    ``num_samples`` parameters are drawn from each observation's posterior and
    simulated once each.
    """
    if not isinstance(task, Task):
        raise TypeError(f"task: expected an astroprob Task; got {type(task).__name__}")
    x_obs = _checks.as_real_array("x_obs", x_obs)
    if x_obs.shape == task.observation_shape:
        x_obs = x_obs[None]
    if x_obs.shape[1:] != task.observation_shape:
        raise ValueError(
            f"x_obs: expected shape {task.observation_shape} or (n_obs, "
            f"{', '.join(map(str, task.observation_shape))}); got {x_obs.shape}"
        )
    _checks.check_finite("x_obs", x_obs)
    key_post, key_sim = jax.random.split(key)
    draws = sample_posteriors(key_post, estimator, x_obs, num_samples, batch_size=batch_size)
    n_obs = len(x_obs)
    x_pred = np.asarray(task.run_simulator(key_sim, draws.reshape(n_obs * num_samples, -1)))
    x_pred = x_pred.reshape(n_obs, num_samples, *task.observation_shape)
    return predictive_check(x_obs, x_pred, statistics=statistics, alpha=alpha)
