"""Gaussian Mixture: a 2-D mixture of a broad and a narrow Gaussian with a common mean.

References:
    Lueckmann et al. (2021), "Benchmarking Simulation-Based Inference", AISTATS,
    https://arxiv.org/abs/2101.04653; task definition of sbibm 1.1.0
    (``sbibm/tasks/gaussian_mixture/task.py``); originally Sisson, Fan & Tanaka (2007),
    "Sequential Monte Carlo without likelihoods", PNAS 104(6).

Definition (sbibm):
    θ ~ U(-10, 10)², x | θ ~ 0.5 · N(θ, I₂) + 0.5 · N(θ, 0.01 · I₂).

One mixture component is drawn per observation and shared by both coordinates (the
scales 1 and 0.1 are standard deviations).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from astroprob.tasks._data import benchmark_metadata, load_task_data, theta_names
from astroprob.tasks._task import Task

__all__ = [
    "MIXTURE_SCALES",
    "MIXTURE_WEIGHTS",
    "PRIOR_BOUND",
    "likelihood",
    "make_task",
    "simulator",
]

# jaxtyping shapes, named at module level so that ruff does not parse them as annotations.
_Vec2 = Float[Array, "2"]
_ThetaBatch = Float[ArrayLike, "*batch 2"]

PRIOR_BOUND = 10.0
"""The prior is uniform on ``[-PRIOR_BOUND, PRIOR_BOUND]²``."""
MIXTURE_WEIGHTS = (0.5, 0.5)
"""Probabilities of the two components."""
MIXTURE_SCALES = (1.0, 0.1)
"""Standard deviations of the two (isotropic) components."""


def simulator(key: PRNGKeyArray, theta: _Vec2) -> _Vec2:
    """Simulate one observation from the two-component mixture centred on θ.

    Args:
        key: PRNG key.
        theta: parameters, shape ``(2,)``.

    Returns:
        x, shape ``(2,)``.
    """
    key_idx, key_noise = jax.random.split(key)
    idx = jax.random.categorical(key_idx, jnp.log(jnp.asarray(MIXTURE_WEIGHTS)))
    scale = jnp.asarray(MIXTURE_SCALES, dtype=theta.dtype)[idx]
    return theta + scale * jax.random.normal(key_noise, theta.shape, theta.dtype)


def likelihood(theta: _ThetaBatch) -> dist.MixtureSameFamily:
    """The likelihood p(x | θ) = 0.5 N(x; θ, I) + 0.5 N(x; θ, 0.01 I).

    Args:
        theta: parameters, shape ``(*batch, 2)``.

    Returns:
        A numpyro MixtureSameFamily with batch shape ``batch`` and event shape ``(2,)``.
    """
    theta = jnp.asarray(theta)
    batch = theta.shape[:-1]
    n_comp = len(MIXTURE_WEIGHTS)
    loc = jnp.broadcast_to(theta[..., None, :], (*batch, n_comp, theta.shape[-1]))
    scale = jnp.asarray(MIXTURE_SCALES, dtype=loc.dtype)[:, None]
    components = dist.Normal(loc, scale).to_event(1)
    mixing = dist.Categorical(
        probs=jnp.broadcast_to(jnp.asarray(MIXTURE_WEIGHTS), (*batch, n_comp))
    )
    return dist.MixtureSameFamily(mixing, components)


def make_task() -> Task:
    """Build the sbibm ``gaussian_mixture`` task with its ten published observations."""
    data = load_task_data("gaussian_mixture")
    prior = dist.Uniform(jnp.full((2,), -PRIOR_BOUND), jnp.full((2,), PRIOR_BOUND)).to_event(1)
    return Task(
        name="gaussian_mixture",
        prior=prior,
        simulator=simulator,
        parameter_names=theta_names(2),
        observation_shape=(2,),
        likelihood=likelihood,
        observations=data["observations"],
        true_parameters=data["true_parameters"],
        description="sbibm Gaussian Mixture: 2 parameters, broad + narrow Gaussian around θ",
        metadata=benchmark_metadata("gaussian_mixture", data),
    )
