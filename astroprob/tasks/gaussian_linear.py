"""Gaussian Linear and Gaussian Linear Uniform: 10-D Gaussian location models.

References:
    Lueckmann et al. (2021), "Benchmarking Simulation-Based Inference", AISTATS,
    https://arxiv.org/abs/2101.04653; task definitions of sbibm 1.1.0
    (``sbibm/tasks/gaussian_linear/task.py``, ``sbibm/tasks/gaussian_linear_uniform/task.py``).

Definitions (sbibm):
    ``gaussian_linear``:          θ ~ N(0, 0.1 · I₁₀),  x | θ ~ N(θ, 0.1 · I₁₀)
    ``gaussian_linear_uniform``:  θ ~ U(-1, 1)¹⁰,     x | θ ~ N(θ, 0.1 · I₁₀)

Note that 0.1 is a *variance*: sbibm's ``prior_scale = simulator_scale = 0.1`` enter as
``precision_matrix = inverse(0.1 · I)``, so both standard deviations are √0.1 ≈ 0.316,
not 0.1. The posterior of ``gaussian_linear`` is Gaussian and known in closed form,
`analytic_posterior`; that of ``gaussian_linear_uniform`` is a Gaussian truncated to
the prior box (not provided here).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from astroprob.tasks._data import benchmark_metadata, load_task_data, theta_names
from astroprob.tasks._task import Task

__all__ = [
    "DIM",
    "NOISE_VARIANCE",
    "PRIOR_BOUND",
    "PRIOR_VARIANCE",
    "analytic_posterior",
    "likelihood",
    "make_task",
    "make_uniform_task",
    "simulator",
]

# jaxtyping shapes, named at module level so that ruff does not parse them as annotations.
_Vec = Float[Array, "10"]
_Batch = Float[ArrayLike, "*batch 10"]
_AnyShape = Float[ArrayLike, "..."]

DIM = 10
"""Number of parameters and of data dimensions."""
PRIOR_VARIANCE = 0.1
"""Variance of each coordinate of the Gaussian prior of ``gaussian_linear``."""
NOISE_VARIANCE = 0.1
"""Variance of each coordinate of the simulator noise."""
PRIOR_BOUND = 1.0
"""``gaussian_linear_uniform``'s prior is uniform on ``[-PRIOR_BOUND, PRIOR_BOUND]¹⁰``."""


def simulator(key: PRNGKeyArray, theta: _Vec) -> _Vec:
    """Simulate one observation, x = θ + √0.1 · ε with ε ~ N(0, I).

    Args:
        key: PRNG key.
        theta: parameters, shape ``(10,)``.

    Returns:
        x, shape ``(10,)``.
    """
    return theta + math.sqrt(NOISE_VARIANCE) * jax.random.normal(key, theta.shape, theta.dtype)


def likelihood(theta: _Batch) -> dist.Distribution:
    """The likelihood p(x | θ) = N(x; θ, 0.1 · I).

    Args:
        theta: parameters, shape ``(*batch, 10)``.

    Returns:
        A numpyro distribution with batch shape ``batch`` and event shape ``(10,)``.
    """
    return dist.Normal(jnp.asarray(theta), math.sqrt(NOISE_VARIANCE)).to_event(1)


def analytic_posterior(x: _AnyShape) -> dist.MultivariateNormal:
    """Exact posterior p(θ | x) of ``gaussian_linear`` for one (or a batch of) observation(s).

    With prior N(0, σ₀² I) and likelihood N(θ, σ² I) the posterior is
    N(σ₀² / (σ₀² + σ²) · x, σ₀² σ² / (σ₀² + σ²) · I), here N(x / 2, 0.05 · I).

    Args:
        x: observation, shape ``(10,)``, or a batch ``(*batch, 10)``.

    Returns:
        A numpyro MultivariateNormal with batch shape ``batch`` and event shape ``(10,)``.

    Raises:
        ValueError: if the last axis of ``x`` is not of length 10.
    """
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != DIM:
        raise ValueError(f"x: expected shape (..., {DIM}); got {x.shape}")
    precision = 1.0 / PRIOR_VARIANCE + 1.0 / NOISE_VARIANCE
    variance = 1.0 / precision
    loc = variance * x / NOISE_VARIANCE  # the prior mean is zero
    cov = jnp.broadcast_to(variance * jnp.eye(DIM, dtype=loc.dtype), (*x.shape[:-1], DIM, DIM))
    return dist.MultivariateNormal(loc, covariance_matrix=cov)


def make_task() -> Task:
    """Build the sbibm ``gaussian_linear`` task with its ten published observations."""
    data = load_task_data("gaussian_linear")
    prior = dist.Normal(jnp.zeros(DIM), math.sqrt(PRIOR_VARIANCE)).to_event(1)
    return Task(
        name="gaussian_linear",
        prior=prior,
        simulator=simulator,
        parameter_names=theta_names(DIM),
        observation_shape=(DIM,),
        likelihood=likelihood,
        observations=data["observations"],
        true_parameters=data["true_parameters"],
        description="sbibm Gaussian Linear: 10-D Gaussian prior and noise, analytic posterior",
        metadata=benchmark_metadata("gaussian_linear", data),
    )


def make_uniform_task() -> Task:
    """Build the sbibm ``gaussian_linear_uniform`` task with its ten published observations."""
    data = load_task_data("gaussian_linear_uniform")
    prior = dist.Uniform(jnp.full((DIM,), -PRIOR_BOUND), jnp.full((DIM,), PRIOR_BOUND)).to_event(1)
    return Task(
        name="gaussian_linear_uniform",
        prior=prior,
        simulator=simulator,
        parameter_names=theta_names(DIM),
        observation_shape=(DIM,),
        likelihood=likelihood,
        observations=data["observations"],
        true_parameters=data["true_parameters"],
        description="sbibm Gaussian Linear Uniform: 10-D uniform prior, Gaussian noise",
        metadata=benchmark_metadata("gaussian_linear_uniform", data),
    )
