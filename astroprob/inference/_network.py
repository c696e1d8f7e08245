"""The posterior network: z-scoring, an optional embedding, and a conditional density.

It works in the unconstrained parameter space ``u`` (see `_support.py`): the
density models ``(u - shift) / scale`` given the embedded, z-scored data.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, Float, PRNGKeyArray


class Statistic(nnx.Variable):
    """A fixed (not trained) array stored with the weights, e.g. z-score statistics."""


def data_statistics(x: ArrayLike, *, per_feature: bool) -> tuple[Array, Array]:
    """Mean and standard deviation of the training data, shape ``x.shape[1:]`` or ``()``.

    Computed in NumPy with float64 accumulators (no compilation for a new data
    shape, and no float32 round-off growing with the number of simulations),
    two passes over row chunks of about 32 MiB. Features with a (numerically)
    zero spread get scale 1, so that constant inputs do not blow up.
    """
    x = np.asarray(x, np.float32)
    rows = x if per_feature else x.reshape(-1, 1)
    n = len(rows)
    mean = rows.mean(axis=0, dtype=np.float64)
    step = max(1, (1 << 22) // max(1, rows[0].size))
    sum_sq = np.zeros_like(mean)
    for start in range(0, n, step):
        deviation = rows[start : start + step] - mean
        sum_sq += np.sum(deviation * deviation, axis=0)
    std = np.sqrt(sum_sq / n)
    if not per_feature:
        mean, std = mean.reshape(()), std.reshape(())
    scale = np.where(std > 1e-8 * (1.0 + np.abs(mean)), std, 1.0)
    return jnp.asarray(mean, jnp.float32), jnp.asarray(scale, jnp.float32)


class PosteriorNetwork(nnx.Module):
    """Conditional density of unconstrained parameters given raw data.

    Args:
        density: a conditional density estimator from `astroprob.flows`.
        embedding: module mapping z-scored data ``(batch, *obs_shape)`` to
            ``(batch, features)``, or ``None`` to flatten the data.
        theta_shift, theta_scale: z-score of the unconstrained parameters, ``(dim,)``.
        x_shift, x_scale: z-score of the data, ``obs_shape`` or ``()``.
    """

    def __init__(
        self,
        density: nnx.Module,
        embedding: nnx.Module | None,
        theta_shift: Array,
        theta_scale: Array,
        x_shift: Array,
        x_scale: Array,
    ):
        self.density = density
        self.embedding = embedding
        self.theta_shift = Statistic(jnp.asarray(theta_shift, jnp.float32))
        self.theta_scale = Statistic(jnp.asarray(theta_scale, jnp.float32))
        self.x_shift = Statistic(jnp.asarray(x_shift, jnp.float32))
        self.x_scale = Statistic(jnp.asarray(x_scale, jnp.float32))

    def context(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch features"]:
        """Summary of the data fed to the density: embedded z-scored ``x``."""
        z = (x - self.x_shift[...]) / self.x_scale[...]
        if self.embedding is None:
            return z.reshape(z.shape[0], -1)
        return self.embedding(z)

    def log_prob(
        self, u: Float[Array, "batch dim"], x: Float[Array, "batch ..."]
    ) -> Float[Array, " batch"]:
        """Log q(u | x) in the unconstrained space, ``(batch,)``."""
        return self.log_prob_given_context(u, self.context(x))

    def log_prob_given_context(
        self, u: Float[Array, "batch dim"], context: Float[Array, "batch features"]
    ) -> Float[Array, " batch"]:
        """Log q(u | x) from a precomputed `context` (reuse it across many u)."""
        z = (u - self.theta_shift[...]) / self.theta_scale[...]
        log_scale = jnp.sum(jnp.log(self.theta_scale[...]))
        return self.density.log_prob(z, context) - log_scale

    def sample(
        self, key: PRNGKeyArray, x: Float[Array, "batch ..."], num_samples: int
    ) -> Float[Array, "batch num_samples dim"]:
        """Draw unconstrained parameters for each observation, ``(batch, num_samples, dim)``."""
        z = self.density.sample(key, self.context(x), num_samples)
        return z * self.theta_scale[...] + self.theta_shift[...]


def context_size(embedding: nnx.Module | None, observation_shape: tuple[int, ...]) -> int:
    """Number of features the embedding (or flattening) produces per observation."""
    if embedding is None:
        return math.prod(observation_shape)
    out = nnx.eval_shape(lambda m: m(jnp.zeros((1, *observation_shape))), embedding)
    if len(out.shape) != 2 or out.shape[0] != 1:
        raise ValueError(
            "embedding: expected an output of shape (batch, features) for an input "
            f"(1, {', '.join(map(str, observation_shape))}); got {tuple(out.shape)}"
        )
    return int(out.shape[1])
