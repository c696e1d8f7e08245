"""Bernoulli GLM: a generalized linear model of a spiking neuron, with sufficient statistics.

References:
    Lueckmann et al. (2021), "Benchmarking Simulation-Based Inference", AISTATS,
    https://arxiv.org/abs/2101.04653; task definition of sbibm 1.1.0
    (``sbibm/tasks/bernoulli_glm/task.py``, summary ``"sufficient"``); originally
    Lueckmann et al. (2017), "Flexible statistical inference for mechanistic models of
    neural dynamics", https://arxiv.org/abs/1711.01861.

Definition (sbibm):
    θ = (β, h) ∈ ℝ¹⁰ (offset β and a 9-tap stimulus filter h), with the Gaussian
    prior N(0, B⁻¹) given by its precision matrix
    B = diag(0.5, FᵀF),  F = D D + diag(√(k / 9)) for k = 0..8,
    where D is the 9×9 first-difference matrix (ones on the diagonal, -1 below it).
    Over T = 100 time bins, y_t ~ Bernoulli(σ(V θ)_t) with the fixed design matrix V
    ``(100, 10)`` built from a frozen white-noise stimulus I (``V[t, 0] = 1``,
    ``V[t, 1 + j] = I[t - j]`` for ``t >= j``, else 0). The observation is
    x = (Σ_t y_t, STA₀, …, STA₈) with STA_j = Σ_{t>=j} y_t I[t - j], i.e. x = Vᵀ y,
    which sbibm computes as ``conv1d(y, I, padding=8)[-9:]``.

The design matrix and stimulus are sbibm's own (``files/design_matrix.pt`` and
``files/stimulus_I.pt``), shipped as JSON in ``data/bernoulli_glm.json`` together with
the ten 100-bin spike trains behind the published observations.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Shaped

from astroprob.tasks._data import benchmark_metadata, load_task_data, theta_names
from astroprob.tasks._task import Task

__all__ = [
    "DIM",
    "NUM_BINS",
    "design_matrix",
    "make_task",
    "prior_precision",
    "simulator",
    "spike_probabilities",
    "stimulus",
    "summary_statistics",
]

# jaxtyping shapes, named at module level so that ruff does not parse them as annotations.
_Vec = Float[Array, "10"]
_ThetaBatch = Float[ArrayLike, "*batch 10"]
_ProbBatch = Float[Array, "*batch 100"]
_SpikesBatch = Shaped[ArrayLike, "*batch 100"]
_XBatch = Float[Array, "*batch 10"]

DIM = 10
"""Number of parameters (offset + 9 filter taps) and of summary statistics."""
NUM_BINS = 100
"""Number of time bins of the spike train."""


def design_matrix() -> np.ndarray:
    """The fixed design matrix V of sbibm, shape ``(100, 10)``, float32, read-only."""
    return load_task_data("bernoulli_glm")["design_matrix"]


def stimulus() -> np.ndarray:
    """The frozen white-noise stimulus I of sbibm, shape ``(100,)``, float32, read-only."""
    return load_task_data("bernoulli_glm")["stimulus_I"]


@functools.cache
def prior_precision() -> np.ndarray:
    """Precision matrix B of the Gaussian prior, shape ``(10, 10)``, float64, read-only."""
    m = DIM - 1
    d = np.eye(m) - np.eye(m, k=-1)
    f = d @ d + np.diag(np.sqrt(np.arange(m) / m))
    b = np.zeros((DIM, DIM))
    b[0, 0] = 0.5
    b[1:, 1:] = f.T @ f
    b.setflags(write=False)
    return b


def spike_probabilities(theta: _ThetaBatch) -> _ProbBatch:
    """Per-bin spike probabilities σ(V θ).

    Args:
        theta: parameters, shape ``(*batch, 10)``.

    Returns:
        Probabilities, shape ``(*batch, 100)``.
    """
    v = jnp.asarray(design_matrix())
    return jax.nn.sigmoid(jnp.asarray(theta) @ v.T)


def summary_statistics(spikes: _SpikesBatch) -> _XBatch:
    """Sufficient statistics x = Vᵀ y: spike count and the 9-lag spike-triggered sum.

    Args:
        spikes: spike trains of 0s and 1s (bool, int or float), shape ``(*batch, 100)``.

    Returns:
        x, shape ``(*batch, 10)``.
    """
    return jnp.asarray(spikes, dtype=jnp.float32) @ jnp.asarray(design_matrix())


def simulator(key: PRNGKeyArray, theta: _Vec) -> _Vec:
    """Simulate one spike train from the GLM and reduce it to its sufficient statistics.

    Args:
        key: PRNG key.
        theta: parameters, shape ``(10,)``.

    Returns:
        x, shape ``(10,)``.
    """
    spikes = jax.random.bernoulli(key, spike_probabilities(theta))
    return summary_statistics(spikes.astype(jnp.float32))


def make_task() -> Task:
    """Build the sbibm ``bernoulli_glm`` task with its ten published observations."""
    data = load_task_data("bernoulli_glm")
    covariance = np.linalg.inv(prior_precision())
    prior = dist.MultivariateNormal(
        jnp.zeros(DIM), scale_tril=jnp.asarray(np.linalg.cholesky(covariance), jnp.float32)
    )
    metadata = benchmark_metadata("bernoulli_glm", data)
    metadata["observations_raw"] = data["observations_raw"]
    return Task(
        name="bernoulli_glm",
        prior=prior,
        simulator=simulator,
        parameter_names=theta_names(DIM),
        observation_shape=(DIM,),
        observations=data["observations"],
        true_parameters=data["true_parameters"],
        description="sbibm Bernoulli GLM: 10 parameters, spike count + spike-triggered sums",
        metadata=metadata,
    )
