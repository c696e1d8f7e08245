"""A residual conditioner with context gating: ``(x, context) -> out``.

``h = A x + C context + b``, then ``num_blocks`` residual blocks

    h <- h + (W2 act(W1 act(h) + b1) + b2) * sigmoid(G context + g)

and a linear read-out. The residual path keeps gradients well conditioned as
blocks are added, and the context gate lets the observation switch features of
the coupling function on and off directly, not only through the first layer
(gated residual networks in the spirit of Dauphin et al. 2017,
https://arxiv.org/abs/1612.08083, as used by the spline flows of Durkan et al.
2019). The second matrix of each block starts near zero, so each block starts
near the identity; the read-out starts at exactly zero, so a flow built on it
starts at the identity map.

Like `ConditionalMLP`, ``x`` and ``context`` need only broadcastable leading
dimensions: the context terms are computed once per context row.
"""

# jaxtyping shape strings ("batch dim") are not Python expressions.
# ruff: noqa: F722

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from astroprob.flows._layers import (
    as_column,
    get_activation,
    lecun_normal,
    linear_columns,
    rows_as_columns,
    zeros,
)

__all__ = ["ResidualConditioner"]

_BLOCK_OUTPUT_SCALE = 1e-2
"""Variance scale of each block's second matrix: blocks start close to the identity."""


class ResidualConditioner(nnx.Module):
    """Gated residual network ``(x, context) -> out``.

    Args:
        in_features: size of ``x`` (may be 0: the network sees only the context).
        context_features: size of ``context`` (at least 1).
        out_features: size of the output.
        hidden_features: width of the residual stream.
        num_blocks: residual blocks (at least 1), two linear layers each.
        activation: a key of `astroprob.flows._layers.ACTIVATIONS`.
        rngs: random streams for the initial weights.
    """

    def __init__(
        self,
        in_features: int,
        context_features: int,
        out_features: int,
        *,
        hidden_features: int,
        num_blocks: int,
        activation: str,
        rngs: nnx.Rngs,
    ):
        get_activation(activation)
        if num_blocks < 1:
            raise ValueError(f"num_hidden_layers: expected >= 1; got {num_blocks}")
        if hidden_features < 1:
            raise ValueError(f"hidden_features: expected >= 1; got {hidden_features}")
        self.activation = activation
        width = hidden_features
        fan_in = in_features + context_features
        self.input_kernel = (
            nnx.Param(lecun_normal(rngs.params(), (in_features, width), fan_in))
            if in_features > 0
            else None
        )
        self.context_kernel = nnx.Param(
            lecun_normal(rngs.params(), (context_features, width), fan_in)
        )
        self.input_bias = nnx.Param(zeros((width,)))

        def stack(make):
            return nnx.Param(
                jax.device_put(np.stack([np.asarray(make()) for _ in range(num_blocks)]))
            )

        self.first_kernels = stack(lambda: lecun_normal(rngs.params(), (width, width), width))
        self.first_biases = nnx.Param(zeros((num_blocks, width)))
        self.second_kernels = stack(
            lambda: lecun_normal(rngs.params(), (width, width), width, _BLOCK_OUTPUT_SCALE)
        )
        self.second_biases = nnx.Param(zeros((num_blocks, width)))
        self.gate_kernels = stack(
            lambda: lecun_normal(rngs.params(), (context_features, width), context_features)
        )
        self.gate_biases = nnx.Param(zeros((num_blocks, width)))
        self.output_kernel = nnx.Param(zeros((width, out_features)))
        self.output_bias = nnx.Param(zeros((out_features,)))

    def __call__(
        self, x: Float[Array, "*xbatch in"], context: Float[Array, "*cbatch ctx"]
    ) -> Float[Array, "*batch out"]:
        """Evaluate the network.

        Args:
            x: ``(*xbatch, in_features)``.
            context: ``(*cbatch, context_features)``, broadcastable against ``xbatch``.

        Returns:
            ``(*batch, out_features)``, ``batch`` the broadcast of both (``cbatch``
            when ``in_features == 0``).
        """
        act = get_activation(self.activation)
        h = context @ self.context_kernel[...] + self.input_bias[...]
        if self.input_kernel is not None:
            h = x @ self.input_kernel[...] + h
        gates = jax.nn.sigmoid(
            jnp.einsum("...c,bcw->b...w", context, self.gate_kernels[...])
            + self.gate_biases[...].reshape((-1,) + (1,) * (context.ndim - 1) + (h.shape[-1],))
        )
        for i in range(self.first_kernels.shape[0]):
            t = act(act(h) @ self.first_kernels[i] + self.first_biases[i])
            h = h + (t @ self.second_kernels[i] + self.second_biases[i]) * gates[i]
        return h @ self.output_kernel[...] + self.output_bias[...]

    def columns(
        self, x: Float[Array, "in ..."], context: Float[Array, "*cbatch ctx"]
    ) -> Float[Array, "out ..."]:
        """`__call__` with the features on the leading axis (same numbers up to rounding).

        Args:
            x: ``(in_features, *xbatch)``.
            context: ``(*cbatch, context_features)`` (rows), broadcastable against
                ``xbatch`` and of at most as many axes.

        Returns:
            ``(out_features, *batch)``.
        """
        act = get_activation(self.activation)
        batch_ndim = x.ndim - 1
        h = rows_as_columns(context @ self.context_kernel[...] + self.input_bias[...], batch_ndim)
        if self.input_kernel is not None:
            h = linear_columns(self.input_kernel[...], x) + h
        for i in range(self.first_kernels.shape[0]):
            t = linear_columns(self.first_kernels[i], act(h))
            t = act(t + as_column(self.first_biases[i], t.ndim))
            u = linear_columns(self.second_kernels[i], t) + as_column(self.second_biases[i], t.ndim)
            gate = jax.nn.sigmoid(context @ self.gate_kernels[i] + self.gate_biases[i])
            h = h + u * rows_as_columns(gate, batch_ndim)
        out = linear_columns(self.output_kernel[...], h)
        return out + as_column(self.output_bias[...], out.ndim)
