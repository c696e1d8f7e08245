"""MADE: the masked autoregressive conditioner network.

Germain, Gregor, Murray & Larochelle (2015), "MADE: Masked Autoencoder for
Distribution Estimation", https://arxiv.org/abs/1502.03509.

Input ``i`` (0-based) of ``x`` gets degree ``i + 1``; hidden units get degrees in
``0 .. dim - 1`` assigned cyclically; the context is connected to every hidden
unit. A hidden unit sees the inputs with degree at most its own; output block
``j`` (the ``params_per_dim`` numbers that parametrise dimension ``j``) sees the
hidden units with degree strictly below ``j + 1``. Hence output block ``j``
depends only on ``x[:j]`` and the context.

Unlike the usual choice of hidden degrees in ``1 .. dim - 1``, degree-0 units
(which see the context only) make the FIRST dimension's outputs depend on the
context too; with degrees starting at 1 they would be constants (biases). With
``dim == 1`` every hidden unit has degree 0.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from flax import nnx
from jaxtyping import Array

from astroprob.flows._layers import ConditionalMLP

__all__ = ["MADE", "made_masks"]


@functools.lru_cache(maxsize=64)
def made_masks(
    dim: int, hidden_features: int, num_hidden_layers: int, params_per_dim: int
) -> tuple[np.ndarray, ...]:
    """The 0/1 kernel masks of a MADE, input layer first.

    Args:
        dim: number of autoregressive inputs.
        hidden_features: width of each hidden layer.
        num_hidden_layers: number of hidden layers.
        params_per_dim: outputs per input dimension.

    Returns:
        ``num_hidden_layers + 1`` float32 arrays with shapes ``(dim, H)``,
        ``(H, H)`` (``num_hidden_layers - 1`` times) and ``(H, dim * params_per_dim)``.
        The output units are ordered dimension-major: unit ``j * params_per_dim + q``
        is parameter ``q`` of dimension ``j``.
    """
    in_degrees = np.arange(1, dim + 1)
    hidden_degrees = np.arange(hidden_features) % dim
    out_degrees = np.repeat(np.arange(1, dim + 1), params_per_dim)
    masks = [in_degrees[:, None] <= hidden_degrees[None, :]]
    masks += [hidden_degrees[:, None] <= hidden_degrees[None, :]] * (num_hidden_layers - 1)
    masks.append(hidden_degrees[:, None] < out_degrees[None, :])
    out = tuple(m.astype(np.float32) for m in masks)
    for m in out:
        m.setflags(write=False)
    return out


class MADE(ConditionalMLP):
    """Masked conditional MLP ``(x[dim], context) -> params[dim * params_per_dim]``.

    Output block ``j`` depends on ``x[:j]`` and the context only.

    Args:
        dim: size of ``x``.
        context_features: size of the context.
        params_per_dim: outputs per dimension of ``x``.
        hidden_features: width of each hidden layer.
        num_hidden_layers: number of hidden layers.
        activation: activation name (see `astroprob.flows._layers.ACTIVATIONS`).
        rngs: random streams for the initial weights.
        final_init_scale: variance scale of the output kernel (0: zeros).
    """

    def __init__(
        self,
        dim: int,
        context_features: int,
        params_per_dim: int,
        *,
        hidden_features: int,
        num_hidden_layers: int,
        activation: str,
        rngs: nnx.Rngs,
        final_init_scale: float = 0.0,
    ):
        super().__init__(
            dim,
            context_features,
            dim * params_per_dim,
            hidden_features=hidden_features,
            num_hidden_layers=num_hidden_layers,
            activation=activation,
            rngs=rngs,
            final_init_scale=final_init_scale,
        )
        self.dim = dim
        self.params_per_dim = params_per_dim
        self.hidden_features = hidden_features
        self.num_hidden_layers = num_hidden_layers

    def output_block(self, h: Array, j: Array | int) -> Array:
        """Outputs of dimension ``j`` only, from the last hidden layer.

        Args:
            h: hidden activations ``(*batch, hidden_features)`` (see `hidden`).
            j: dimension index (may be traced).

        Returns:
            ``(*batch, params_per_dim)``, equal to
            ``self(x, context).reshape(..., dim, params_per_dim)[..., j, :]``.
        """
        p = self.params_per_dim
        kernel = jax.lax.dynamic_slice_in_dim(self.output_kernel_masked(), j * p, p, axis=1)
        bias = jax.lax.dynamic_slice_in_dim(self.output_bias[...], j * p, p)
        return h @ kernel + bias

    def _masks(self) -> tuple[np.ndarray, ...]:
        return made_masks(
            self.dim, self.hidden_features, self.num_hidden_layers, self.params_per_dim
        )
