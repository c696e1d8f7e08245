"""The posterior network: z-scoring, an optional embedding, and a conditional density.

It works in the unconstrained parameter space ``u`` (see `_support.py`): the
density models ``(u - shift) / scale`` given the embedded, z-scored data, or,
with a linear standardisation (`linear_statistics`), ``L⁻¹ (u - b - A z)``
where ``A z + b`` is the least-squares regression of ``u`` on the z-scored
data ``z`` and ``L`` the Cholesky factor of the residual covariance.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.scipy.linalg import solve_triangular
from jax.typing import ArrayLike
from jaxtyping import Array, Float, PRNGKeyArray

from astroprob.inference._symmetry import Symmetry

CHUNK_VALUES = 1 << 22
"""Values per row chunk (32 MiB in float64) when statistics are accumulated on the host."""


class Statistic(nnx.Variable):
    """A fixed (not trained) array stored with the weights, e.g. z-score statistics."""


def data_statistics(x: ArrayLike, *, per_feature: bool) -> tuple[Array, Array]:
    """Mean and standard deviation of the training data, shape ``x.shape[1:]`` or ``()``.

    Computed in NumPy with float64 accumulators (no compilation for a new data
    shape, and no float32 round-off growing with the number of simulations),
    two passes over row chunks of `CHUNK_VALUES` values. Features with a (numerically)
    zero spread get scale 1, so that constant inputs do not blow up.
    """
    x = np.asarray(x, np.float32)
    rows = x if per_feature else x.reshape(-1, 1)
    n = len(rows)
    mean = rows.mean(axis=0, dtype=np.float64)
    step = max(1, CHUNK_VALUES // max(1, rows[0].size))
    sum_sq = np.zeros_like(mean)
    for start in range(0, n, step):
        deviation = rows[start : start + step] - mean
        sum_sq += np.sum(deviation * deviation, axis=0)
    std = np.sqrt(sum_sq / n)
    if not per_feature:
        mean, std = mean.reshape(()), std.reshape(())
    scale = np.where(std > 1e-8 * (1.0 + np.abs(mean)), std, 1.0)
    return jnp.asarray(mean, jnp.float32), jnp.asarray(scale, jnp.float32)


def linear_statistics(
    u: ArrayLike, z: ArrayLike, *, ridge: float = 1e-6
) -> tuple[Array, Array, Array]:
    """Least-squares regression of parameters on data, for a conditional standardisation.

    Fits ``u ≈ b + z A`` by ordinary least squares in float64 and returns the
    intercept ``b`` ``(dim,)``, the slopes ``A`` ``(features, dim)`` and the
    lower Cholesky factor ``L`` ``(dim, dim)`` of the residual covariance
    (divided by ``n - features - 1``), so that ``L⁻¹ (u - b - z A)`` has zero
    mean and unit covariance on the training data. This is the regression
    adjustment of ABC (Beaumont, Zhang & Balding 2002) used as a fixed first
    layer: for a linear-Gaussian model the flow is left with the identity.

    Args:
        u: unconstrained parameters ``(n, dim)``.
        z: z-scored, flattened data ``(n, features)``.
        ridge: added to the diagonal of the residual covariance, relative to
            each diagonal entry (with a floor for zero ones), so that ``L``
            exists for degenerate residuals.

    Raises:
        ValueError: if there are not more simulations than ``features + 1``.
    """
    u = np.asarray(u)
    z = np.asarray(z)
    n, features = z.shape
    if n <= features + 1:
        raise ValueError(
            f"theta_scaling='linear': needs more training simulations than data features + 1 "
            f"({features + 1}); got {n}"
        )
    # Normal equations accumulated over row chunks of about 32 MiB in float64, so that
    # memory does not grow with the number of simulations; lstsq on the Gram matrix
    # gives the minimum-norm solution when features are collinear (e.g. constant).
    step = max(1, CHUNK_VALUES // (features + 1))

    def chunks():
        for start in range(0, n, step):
            rows = z[start : start + step].astype(np.float64)
            design = np.concatenate([np.ones((len(rows), 1)), rows], axis=1)
            yield design, u[start : start + step].astype(np.float64)

    gram = np.zeros((features + 1, features + 1))
    moment = np.zeros((features + 1, u.shape[1]))
    for design, target in chunks():
        gram += design.T @ design
        moment += design.T @ target
    coefficients, *_ = np.linalg.lstsq(gram, moment, rcond=None)
    covariance = np.zeros((u.shape[1], u.shape[1]))
    for design, target in chunks():
        residual = target - design @ coefficients
        covariance += residual.T @ residual
    covariance /= n - features - 1
    # Relative to each parameter's own residual variance, so that parameters of very
    # different scales are all whitened; a zero variance gets a floor relative to the
    # mean one instead.
    variances = np.diag(covariance)
    floor = max(1e-6 * float(np.mean(variances)), float(np.finfo(np.float32).tiny))
    jitter = ridge * np.maximum(variances, floor)
    cholesky = np.linalg.cholesky(covariance + np.diag(jitter))
    return (
        jnp.asarray(coefficients[0], jnp.float32),
        jnp.asarray(coefficients[1:], jnp.float32),
        jnp.asarray(cholesky, jnp.float32),
    )


class PosteriorNetwork(nnx.Module):
    """Conditional density of unconstrained parameters given raw data.

    Args:
        density: a conditional density estimator from `astroprob.flows`.
        embedding: module mapping z-scored data ``(batch, *obs_shape)`` to
            ``(batch, features)``, or ``None`` to flatten the data.
        theta_shift, theta_scale: z-score of the unconstrained parameters,
            ``(dim,)``; or, with ``theta_slope``, the intercept ``(dim,)`` and
            the lower Cholesky factor ``(dim, dim)`` of `linear_statistics`.
        x_shift, x_scale: z-score of the data, ``obs_shape`` or ``()``.
        theta_slope: ``None``, or the slopes ``(features, dim)`` of the linear
            standardisation; it needs ``embedding=None``, since it acts on the
            flattened z-scored data (the density's context).
        symmetry: ``None``, or a `astroprob.inference._symmetry.Symmetry`: the
            density is then the group average ``q_G(u | x) = (1/|G|) Σ_g
            q(ρ_g u | g x)``, exactly equivariant, and `context` returns the
            contexts of all ``|G|`` turned observations, ``(batch, |G|,
            features)``. Needs the per-parameter standardisation.
    """

    def __init__(
        self,
        density: nnx.Module,
        embedding: nnx.Module | None,
        theta_shift: Array,
        theta_scale: Array,
        x_shift: Array,
        x_scale: Array,
        theta_slope: Array | None = None,
        symmetry: Symmetry | None = None,
    ):
        theta_scale = jnp.asarray(theta_scale, jnp.float32)
        if symmetry is not None and theta_slope is not None:
            raise ValueError(
                "symmetry: needs the per-parameter standardisation, not the linear one"
            )
        if theta_slope is not None and (embedding is not None or theta_scale.ndim != 2):
            raise ValueError(
                "theta_slope: a linear standardisation needs embedding=None and a "
                f"(dim, dim) Cholesky factor as theta_scale; got theta_scale {theta_scale.shape}"
            )
        self.density = density
        self.embedding = embedding
        self.theta_shift = Statistic(jnp.asarray(theta_shift, jnp.float32))
        self.theta_scale = Statistic(theta_scale)
        self.theta_slope = (
            None if theta_slope is None else Statistic(jnp.asarray(theta_slope, jnp.float32))
        )
        self.x_shift = Statistic(jnp.asarray(x_shift, jnp.float32))
        self.x_scale = Statistic(jnp.asarray(x_scale, jnp.float32))
        self.symmetry = symmetry

    def context(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch *g features"]:
        """Summary of the data fed to the density: embedded z-scored ``x``.

        ``(batch, features)``; with a symmetry ``(batch, |G|, features)``, the
        contexts of every turned observation ``g x``.
        """
        if self.symmetry is not None:
            return self.symmetry.contexts(self._embed, x)
        return self._embed(x)

    def _embed(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch features"]:
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
        self, u: Float[Array, "batch dim"], context: Float[Array, "batch *g features"]
    ) -> Float[Array, " batch"]:
        """Log q(u | x) from a precomputed `context` (reuse it across many u)."""
        if self.symmetry is not None:
            return self.symmetry.log_prob(self._base_log_prob, u, context)
        return self._base_log_prob(u, context)

    def training_log_prob(
        self, u: Float[Array, "batch dim"], x: Float[Array, "batch ..."]
    ) -> Float[Array, " batch"]:
        """The log density NPE maximises, ``(batch,)``.

        `log_prob`, or with a symmetry the mean over group elements of the flow's
        ``log q(ρ_g u | g x)``, a lower bound of ``log q_G(u | x)`` (see
        `astroprob.inference._symmetry`).
        """
        return self.training_log_prob_given_context(u, self.context(x))

    def training_log_prob_given_context(
        self, u: Float[Array, "batch dim"], context: Float[Array, "batch *g features"]
    ) -> Float[Array, " batch"]:
        """`training_log_prob` from a precomputed `context`."""
        if self.symmetry is None:
            return self._base_log_prob(u, context)
        return jnp.mean(self.symmetry.element_log_probs(self._base_log_prob, u, context), axis=1)

    def _base_log_prob(
        self, u: Float[Array, "batch dim"], context: Float[Array, "batch features"]
    ) -> Float[Array, " batch"]:
        residual = u - self._shift(context)
        scale = self.theta_scale[...]
        if self.theta_slope is None:
            z = residual / scale
            log_scale = jnp.sum(jnp.log(scale))
        else:
            z = solve_triangular(scale, residual.T, lower=True).T
            log_scale = jnp.sum(jnp.log(jnp.diagonal(scale)))
        return self.density.log_prob(z, context) - log_scale

    def sample(
        self, key: PRNGKeyArray, x: Float[Array, "batch ..."], num_samples: int
    ) -> Float[Array, "batch num_samples dim"]:
        """Draw unconstrained parameters for each observation, ``(batch, num_samples, dim)``."""
        context = self.context(x)
        if self.symmetry is not None:
            return self.symmetry.sample(self._base_sample, key, context, num_samples)
        return self._base_sample(key, context, num_samples)

    def _base_sample(
        self, key: PRNGKeyArray, context: Float[Array, "batch features"], num_samples: int
    ) -> Float[Array, "batch num_samples dim"]:
        z = self.density.sample(key, context, num_samples)
        scale = self.theta_scale[...]
        z = z * scale if self.theta_slope is None else z @ scale.T
        return z + self._shift(context)[:, None, :]

    def _shift(self, context: Float[Array, "batch features"]) -> Float[Array, "batch dim"]:
        """Where the standardisation centres u: the mean, or the regression on the context."""
        shift = self.theta_shift[...]
        if self.theta_slope is None:
            return jnp.broadcast_to(shift, (context.shape[0], *shift.shape))
        return shift + context @ self.theta_slope[...]


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
