"""A conditional elementwise affine layer: ``z = (theta - shift(c)) / scale(c)``.

``(shift, log-ish scale)`` are an MLP of the context plus a linear map of it.

Spline layers act on ``[-B, B]`` and are the identity outside, so they cannot
move a posterior whose location wanders with the observation over a range wider
than ``B`` (e.g. gaussian_linear, where the posterior mean follows ``x``): the
part of the posterior in the identity tails stays unshaped. Placed first on the
data side of a spline flow, this layer recentres and rescales ``theta`` with a
shift and scale predicted from the context alone, so that the splines refine a
roughly standardised posterior that lives inside ``[-B, B]``.

The layer starts at the identity (shift 0, scale 1).
"""

# jaxtyping shape strings ("batch dim") are not Python expressions.
# ruff: noqa: F722

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from astroprob.flows._layers import ConditionalMLP, rows_as_columns, zeros

__all__ = ["ConditionalAffine"]


class ConditionalAffine(nnx.Module):
    """``z = (theta - shift(context)) / scale(context)``, elementwise.

    Args:
        dim: size of ``theta``'s last axis.
        context_dim: size of the context.
        hidden_features: width of the context network.
        num_hidden_layers: hidden layers of the context network.
        activation: its activation (a key of `astroprob.flows._layers.ACTIVATIONS`).
        rngs: random streams for the initial weights.
        min_scale: floor of the scale.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        *,
        hidden_features: int,
        num_hidden_layers: int,
        activation: str,
        rngs: nnx.Rngs,
        min_scale: float = 1e-3,
    ):
        self.dim = dim
        self.min_scale = min_scale
        # softplus(offset) + min_scale == 1: zero network outputs give scale 1.
        self.scale_offset = math.log(math.expm1(1.0 - min_scale))
        self.network = ConditionalMLP(
            0,
            context_dim,
            2 * dim,
            hidden_features=hidden_features,
            num_hidden_layers=num_hidden_layers,
            activation=activation,
            rngs=rngs,
        )
        # A linear path from the context, next to the network: posteriors whose
        # location is linear in the data (linear-Gaussian models) need no more.
        self.linear_kernel = nnx.Param(zeros((context_dim, 2 * dim)))

    def shift_and_scale(
        self, context: Float[Array, "*batch ctx"]
    ) -> tuple[Float[Array, "*batch dim"], Float[Array, "*batch dim"]]:
        """The shift and (positive) scale for each context row."""
        out = self.network(jnp.zeros(context.shape[:-1] + (0,), context.dtype), context)
        out = out + context @ self.linear_kernel[...]
        shift, raw_scale = out[..., : self.dim], out[..., self.dim :]
        return shift, jax.nn.softplus(raw_scale + self.scale_offset) + self.min_scale

    def __call__(
        self, x: Float[Array, "*batch dim"], context: Array, *, inverse: bool
    ) -> tuple[Float[Array, "*batch dim"], Float[Array, "*cbatch"]]:
        """Apply the layer (``inverse=False``: data -> base).

        Returns:
            ``(y, log_det)`` with ``log_det = log|det dy/dx|`` per context row
            (broadcastable against ``x``'s leading dimensions).
        """
        shift, scale = self.shift_and_scale(context)
        log_scale = jnp.sum(jnp.log(scale), axis=-1)
        if not inverse:
            return (x - shift) / scale, -log_scale
        return x * scale + shift, log_scale

    def inverse_columns(
        self, x: Float[Array, "dim ..."], context: Float[Array, "*cbatch ctx"]
    ) -> tuple[Float[Array, "dim ..."], Float[Array, "*cbatch"]]:
        """The inverse (base -> data) with the features of ``x`` on the leading axis.

        Args:
            x: ``(dim, *batch)``.
            context: ``(*cbatch, context_dim)`` (rows), broadcastable against
                ``batch`` and of at most as many axes.

        Returns:
            ``(y, log_det)``: ``y`` of ``x``'s shape, ``log_det`` per context row.
        """
        shift, scale = self.shift_and_scale(context)
        log_scale = jnp.sum(jnp.log(scale), axis=-1)
        batch_ndim = x.ndim - 1
        return x * rows_as_columns(scale, batch_ndim) + rows_as_columns(
            shift, batch_ndim
        ), log_scale
