"""SLCP: simple likelihood, complex posterior.

References:
    Lueckmann et al. (2021), "Benchmarking Simulation-Based Inference", AISTATS,
    https://arxiv.org/abs/2101.04653; task definition of sbibm 1.1.0
    (``sbibm/tasks/slcp/task.py``); originally Papamakarios, Sterratt & Murray (2019),
    "Sequential Neural Likelihood", https://arxiv.org/abs/1805.07226.

Definition (sbibm):
    θ ~ U(-3, 3)⁵, m = (θ₁, θ₂), s₁ = θ₃², s₂ = θ₄², ρ = tanh(θ₅),
    S = [[s₁² + ε, ρ s₁ s₂], [ρ s₁ s₂, s₂² + ε]] with ε = 10⁻⁶,
    x = (x₁, x₂, x₃, x₄) flattened to 8 numbers, x_k ~ N(m, S) i.i.d.

The observation is ordered draw by draw: ``x.reshape(4, 2)[k]`` is draw ``k``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from astroprob.tasks._data import benchmark_metadata, load_task_data, theta_names
from astroprob.tasks._task import Task

__all__ = ["EPS", "NUM_DRAWS", "PRIOR_BOUND", "covariance", "likelihood", "make_task", "simulator"]

# jaxtyping shapes, named at module level so that ruff does not parse them as annotations.
_Theta = Float[Array, "5"]
_ThetaBatch = Float[ArrayLike, "*batch 5"]
_Cov = Float[Array, "2 2"]
_X = Float[Array, "8"]

PRIOR_BOUND = 3.0
"""The prior is uniform on ``[-PRIOR_BOUND, PRIOR_BOUND]⁵``."""
NUM_DRAWS = 4
"""Number of i.i.d. 2-D Gaussian draws in one observation."""
EPS = 1e-6
"""Added to the diagonal of the covariance, as in sbibm, to keep it positive definite."""


def covariance(theta: _Theta) -> _Cov:
    """Covariance ``S(θ)`` of each 2-D draw.

    Args:
        theta: parameters, shape ``(5,)``.

    Returns:
        S, shape ``(2, 2)``.
    """
    s1, s2 = theta[2] ** 2, theta[3] ** 2
    rho = jnp.tanh(theta[4])
    off = rho * s1 * s2
    return jnp.stack([jnp.stack([s1**2 + EPS, off]), jnp.stack([off, s2**2 + EPS])])


def _scale_tril(theta: Array) -> Array:
    """Cholesky factor of `covariance`, written out so that it stays finite in float32."""
    s1, s2 = theta[2] ** 2, theta[3] ** 2
    rho = jnp.tanh(theta[4])
    l11 = jnp.sqrt(s1**2 + EPS)
    l21 = rho * s1 * s2 / l11
    # s2² + ε - l21² = s2² (1 - ρ² s1² / (s1² + ε)) + ε  >=  ε
    l22 = jnp.sqrt(s2**2 * (1.0 - rho**2 * s1**2 / (s1**2 + EPS)) + EPS)
    zero = jnp.zeros_like(l11)
    return jnp.stack([jnp.stack([l11, zero]), jnp.stack([l21, l22])])


def simulator(key: PRNGKeyArray, theta: _Theta) -> _X:
    """Simulate one SLCP observation: four i.i.d. draws from N(m(θ), S(θ)), flattened.

    Args:
        key: PRNG key.
        theta: parameters, shape ``(5,)``.

    Returns:
        x, shape ``(8,)``, ordered ``(x1_1, x1_2, x2_1, x2_2, ...)``.
    """
    noise = jax.random.normal(key, (NUM_DRAWS, 2), dtype=theta.dtype)
    draws = theta[:2] + noise @ _scale_tril(theta).T
    return draws.reshape(2 * NUM_DRAWS)


def likelihood(theta: _ThetaBatch) -> dist.MultivariateNormal:
    """The SLCP likelihood p(x | θ) as one 8-dimensional Gaussian.

    The four draws are independent, so the covariance is block diagonal with four
    copies of ``S(θ)``.

    Args:
        theta: parameters, shape ``(*batch, 5)``.

    Returns:
        A numpyro MultivariateNormal with batch shape ``batch`` and event shape ``(8,)``.
    """
    theta = jnp.asarray(theta)
    tril = jnp.vectorize(_scale_tril, signature="(5)->(2,2)")(theta)
    eye = jnp.eye(NUM_DRAWS, dtype=tril.dtype)
    block = jnp.einsum("ij,...ab->...iajb", eye, tril).reshape(
        (*tril.shape[:-2], 2 * NUM_DRAWS, 2 * NUM_DRAWS)
    )
    loc = jnp.tile(theta[..., :2], NUM_DRAWS)
    return dist.MultivariateNormal(loc, scale_tril=block)


def make_task() -> Task:
    """Build the sbibm ``slcp`` task with its ten published observations."""
    data = load_task_data("slcp")
    prior = dist.Uniform(jnp.full((5,), -PRIOR_BOUND), jnp.full((5,), PRIOR_BOUND)).to_event(1)
    return Task(
        name="slcp",
        prior=prior,
        simulator=simulator,
        parameter_names=theta_names(5),
        observation_shape=(2 * NUM_DRAWS,),
        likelihood=likelihood,
        observations=data["observations"],
        true_parameters=data["true_parameters"],
        description="sbibm SLCP: 5 parameters, four i.i.d. 2-D Gaussian draws, complex posterior",
        metadata=benchmark_metadata("slcp", data),
    )
