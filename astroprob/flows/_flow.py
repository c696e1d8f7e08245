"""Shared shell of the conditional normalizing flows (NSF, MAF).

A flow is a stack of bijective layers between data ``theta`` and base noise
``z ~ N(0, I)``. Subclasses provide the layers and permutations; this class
chains them (data -> base in `ConditionalFlow._forward`, base -> data in
`ConditionalFlow._inverse`, on validated arrays whose leading dimensions
broadcast against the context's) and adds the argument checks and the public
`log_prob`, `sample`, `sample_and_log_prob`, `transform` and `inverse`.
"""

# jaxtyping shape strings ("batch dim") are not Python expressions.
# ruff: noqa: F722

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, Float, PRNGKeyArray

from astroprob.flows._checks import (
    check_batch_pair,
    check_constructor,
    check_context,
    check_num_samples,
)
from astroprob.flows._chunks import map_samples_in_chunks

__all__ = ["ConditionalFlow", "make_permutations", "standard_normal_logpdf"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

PERMUTATIONS = ("reverse", "random")


def standard_normal_logpdf(z: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    """Elementwise ``log N(z | 0, 1)``."""
    return -0.5 * jnp.square(z) - _HALF_LOG_2PI


def make_permutations(
    dim: int, num_transforms: int, kind: str, seed: int
) -> tuple[tuple[int, ...] | None, ...]:
    """Static permutations applied between consecutive layers.

    Args:
        dim: number of dimensions.
        num_transforms: number of layers; ``num_transforms - 1`` permutations.
        kind: ``"reverse"`` (flip the order) or ``"random"`` (a fixed random
            permutation per gap, drawn with numpy from ``seed``).
        seed: seed for ``"random"``.

    Returns:
        One entry per gap between layers; ``None`` means the reversal, a tuple
        is an index array ``perm`` applied as ``x[..., perm]``.

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind not in PERMUTATIONS:
        raise ValueError(f"permutation: expected one of {PERMUTATIONS}; got {kind!r}")
    if kind == "reverse":
        return (None,) * (num_transforms - 1)
    rng = np.random.default_rng(seed)
    return tuple(tuple(int(i) for i in rng.permutation(dim)) for _ in range(num_transforms - 1))


def apply_permutation(x: Array, perm: tuple[int, ...] | None) -> Array:
    """``x[..., perm]`` (``perm=None``: reverse the last axis)."""
    if perm is None:
        return jnp.flip(x, axis=-1)
    return x[..., np.asarray(perm)]


def invert_permutation(x: Array, perm: tuple[int, ...] | None, *, axis: int = -1) -> Array:
    """Undo `apply_permutation` (along ``axis``: the features' axis)."""
    if perm is None:
        return jnp.flip(x, axis=axis)
    if axis == -1:
        return x[..., np.argsort(perm)]
    return x[(slice(None),) * axis + (np.argsort(perm),)]


def check_positive_int(value: object, name: str) -> int:
    """Validate a positive integer hyperparameter.

    Raises:
        ValueError: naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: expected a positive int; got {value!r}")
    return int(value)


class ConditionalFlow(nnx.Module):
    """Base class: a bijection ``theta <-> z`` conditioned on ``context``.

    Subclasses set ``self.dim``, ``self.context_dim``, ``self.layers`` (bijective
    layers called as ``layer(x, context, inverse=...) -> (y, log_det)``, data ->
    base when ``inverse=False``), ``self.permutations`` (from `make_permutations`,
    applied between consecutive layers) and implement ``config``. They may
    override ``_inverse_draws`` to sample in another layout.
    """

    dim: int
    context_dim: int
    layers: nnx.List
    permutations: tuple[tuple[int, ...] | None, ...]

    def _init_dims(self, dim: int, context_dim: int) -> None:
        self.dim, self.context_dim = check_constructor(dim, context_dim)

    @property
    def config(self) -> dict[str, Any]:
        """Hyperparameters (JSON-serialisable) that rebuild this architecture."""
        raise NotImplementedError

    def _forward(self, theta: Array, context: Array) -> tuple[Array, Array]:
        """Data -> base: ``(z, log|dz/dtheta|)``; leading dims broadcast."""
        x = theta
        total = jnp.zeros((), theta.dtype)
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = apply_permutation(x, self.permutations[i - 1])
            x, log_det = layer(x, context, inverse=False)
            total = total + log_det
        return x, total

    def _inverse(self, z: Array, context: Array) -> tuple[Array, Array]:
        """Base -> data: ``(theta, log|dtheta/dz|)``; leading dims broadcast."""
        x = z
        total = jnp.zeros((), z.dtype)
        for i in reversed(range(len(self.layers))):
            x, log_det = self.layers[i](x, context, inverse=True)
            total = total + log_det
            if i > 0:
                x = invert_permutation(x, self.permutations[i - 1])
        return x, total

    def _inverse_draws(self, z: Array, context: Array) -> tuple[Array, Array]:
        """`_inverse` of a block of draws, ``z (b, m, dim)`` with ``context (b, 1, c)``.

        Subclasses may evaluate it in another layout (same numbers up to rounding).
        """
        return self._inverse(z, context)

    def transform(
        self, theta: ArrayLike, context: ArrayLike
    ) -> tuple[Float[Array, "batch dim"], Float[Array, " batch"]]:
        """Map data to base noise.

        Args:
            theta: ``(batch, dim)``.
            context: ``(batch, context_dim)``.

        Returns:
            ``(z, log_det)`` with ``z`` of shape ``(batch, dim)`` and ``log_det``
            ``= log|det dz/dtheta|`` of shape ``(batch,)``, so that
            ``log_prob = standard_normal_logpdf(z).sum(-1) + log_det``.

        Raises:
            ValueError: wrong shapes (see `log_prob`).
        """
        theta, context = check_batch_pair(theta, "theta", self.dim, context, self.context_dim)
        return self._forward(theta, context)

    def inverse(
        self, z: ArrayLike, context: ArrayLike
    ) -> tuple[Float[Array, "batch dim"], Float[Array, " batch"]]:
        """Map base noise to data.

        Args:
            z: ``(batch, dim)``.
            context: ``(batch, context_dim)``.

        Returns:
            ``(theta, log_det)`` with ``theta`` of shape ``(batch, dim)`` and
            ``log_det = log|det dtheta/dz|`` of shape ``(batch,)``.

        Raises:
            ValueError: wrong shapes.
        """
        z, context = check_batch_pair(z, "z", self.dim, context, self.context_dim)
        return self._inverse(z, context)

    def log_prob(self, theta: ArrayLike, context: ArrayLike) -> Float[Array, " batch"]:
        """Log density ``log q(theta | context)``.

        Args:
            theta: ``(batch, dim)``.
            context: ``(batch, context_dim)``.

        Returns:
            ``(batch,)``.

        Raises:
            ValueError: ``theta`` or ``context`` not 2-D, wrong trailing size, or
                different batch sizes.
        """
        theta, context = check_batch_pair(theta, "theta", self.dim, context, self.context_dim)
        z, log_det = self._forward(theta, context)
        return jnp.sum(standard_normal_logpdf(z), axis=-1) + log_det

    def sample_and_log_prob(
        self, key: PRNGKeyArray, context: ArrayLike, num_samples: int
    ) -> tuple[Float[Array, "batch num_samples dim"], Float[Array, "batch num_samples"]]:
        """Draw samples and their log densities in one pass.

        Args:
            key: PRNG key.
            context: ``(batch, context_dim)``.
            num_samples: draws per context row (static positive int).

        Returns:
            ``(samples, log_prob)`` of shapes ``(batch, num_samples, dim)`` and
            ``(batch, num_samples)``.

        Raises:
            ValueError: wrong ``context`` shape or ``num_samples`` not a positive int.
        """
        context = check_context(context, self.context_dim)
        num_samples = check_num_samples(num_samples)
        batch = context.shape[0]
        z = jax.random.normal(key, (batch, num_samples, self.dim), context.dtype)

        def draw(z_block: Array, context_block: Array) -> tuple[Array, Array]:
            theta, log_det = self._inverse_draws(z_block, context_block)
            log_prob = jnp.sum(standard_normal_logpdf(z_block), axis=-1) - log_det
            return theta, jnp.broadcast_to(log_prob, z_block.shape[:-1])

        return map_samples_in_chunks(draw, z, context)

    def sample(
        self, key: PRNGKeyArray, context: ArrayLike, num_samples: int
    ) -> Float[Array, "batch num_samples dim"]:
        """Draw ``num_samples`` independent samples for each context row.

        Args:
            key: PRNG key.
            context: ``(batch, context_dim)``.
            num_samples: draws per context row (static positive int).

        Returns:
            ``(batch, num_samples, dim)``.

        Raises:
            ValueError: wrong ``context`` shape or ``num_samples`` not a positive int.
        """
        return self.sample_and_log_prob(key, context, num_samples)[0]
