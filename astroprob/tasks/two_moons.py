"""Two Moons: a 2-D crescent-shaped, bimodal posterior.

References:
    Lueckmann et al. (2021), "Benchmarking Simulation-Based Inference", AISTATS,
    https://arxiv.org/abs/2101.04653; task definition of sbibm 1.1.0
    (``sbibm/tasks/two_moons/task.py``); originally Greenberg, Nonnenmacher & Macke
    (2019), https://arxiv.org/abs/1905.07488.

Definition (sbibm):
    θ ~ U(-1, 1)², a ~ U(-π/2, π/2), r ~ N(0.1, 0.01²),
    p = (r cos a + 0.25, r sin a),
    x = p + (-|θ₁ + θ₂| / √2, (-θ₁ + θ₂) / √2).

The likelihood has no numpyro density over x (it is concentrated on a thin ring
whose angle is uniform), so ``likelihood`` is not set.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jaxtyping import Array, Float, PRNGKeyArray

from astroprob.tasks._data import benchmark_metadata, load_task_data, theta_names
from astroprob.tasks._task import Task

__all__ = [
    "A_HIGH",
    "A_LOW",
    "BASE_OFFSET",
    "PRIOR_BOUND",
    "R_LOC",
    "R_SCALE",
    "make_task",
    "simulator",
]

# jaxtyping shapes, named at module level so that ruff does not parse them as annotations.
_Vec2 = Float[Array, "2"]

PRIOR_BOUND = 1.0
"""The prior is uniform on ``[-PRIOR_BOUND, PRIOR_BOUND]²``."""
A_LOW, A_HIGH = -math.pi / 2, math.pi / 2
"""Range of the uniform angle ``a``."""
R_LOC, R_SCALE = 0.1, 0.01
"""Mean and standard deviation of the Gaussian radius ``r``."""
BASE_OFFSET = 0.25
"""Shift of the crescent along the first axis."""


def simulator(key: PRNGKeyArray, theta: _Vec2) -> _Vec2:
    """Simulate one Two Moons observation.

    Args:
        key: PRNG key.
        theta: parameters, shape ``(2,)``.

    Returns:
        x, shape ``(2,)``.
    """
    key_a, key_r = jax.random.split(key)
    a = jax.random.uniform(key_a, (), minval=A_LOW, maxval=A_HIGH)
    r = R_LOC + R_SCALE * jax.random.normal(key_r, ())
    p = jnp.stack([r * jnp.cos(a) + BASE_OFFSET, r * jnp.sin(a)])
    # Rotate θ by -π/4: z0 = (θ1 + θ2)/√2, z1 = (θ2 - θ1)/√2.
    z0 = (theta[0] + theta[1]) / math.sqrt(2.0)
    z1 = (theta[1] - theta[0]) / math.sqrt(2.0)
    return p + jnp.stack([-jnp.abs(z0), z1])


def make_task() -> Task:
    """Build the sbibm ``two_moons`` task with its ten published observations."""
    data = load_task_data("two_moons")
    prior = dist.Uniform(jnp.full((2,), -PRIOR_BOUND), jnp.full((2,), PRIOR_BOUND)).to_event(1)
    return Task(
        name="two_moons",
        prior=prior,
        simulator=simulator,
        parameter_names=theta_names(2),
        observation_shape=(2,),
        observations=data["observations"],
        true_parameters=data["true_parameters"],
        description="sbibm Two Moons: 2 parameters, 2-D data, crescent-shaped bimodal posterior",
        metadata=benchmark_metadata("two_moons", data),
    )
