"""Conditional masked autoregressive flow (MAF) with affine MADE layers.

Papamakarios, Pavlakou & Murray (2017), "Masked Autoregressive Flow for Density
Estimation", https://arxiv.org/abs/1705.07057. Conditioner: MADE (Germain et
al. 2015, https://arxiv.org/abs/1502.03509).

Each layer maps data to noise as ``z_j = theta_j * scale_j + shift_j`` with
``(shift_j, scale_j)`` computed by a MADE from ``theta[:j]`` and the context, so
the density is one network pass per layer and sampling ``dim`` passes per layer.
The scale is ``softplus(u + c) + min_scale`` with ``c`` chosen so that the flow
starts at the identity (the MADE output layer is initialised at zero); the
softplus keeps it positive and free of the overflow of ``exp``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array

from astroprob.flows._flow import (
    ConditionalFlow,
    check_positive_int,
    make_permutations,
)
from astroprob.flows._made import MADE

__all__ = ["MaskedAutoregressiveFlow"]


class _AffineAutoregressive(nnx.Module):
    """One MAF layer: ``z = theta * scale(theta_<j) + shift(theta_<j)``."""

    def __init__(
        self,
        dim: int,
        context_dim: int,
        *,
        hidden_features: int,
        num_hidden_layers: int,
        activation: str,
        min_scale: float,
        rngs: nnx.Rngs,
    ):
        self.dim = dim
        self.min_scale = min_scale
        self.scale_offset = math.log(math.expm1(1.0 - min_scale))
        self.conditioner = MADE(
            dim,
            context_dim,
            2,
            hidden_features=hidden_features,
            num_hidden_layers=num_hidden_layers,
            activation=activation,
            rngs=rngs,
        )

    def _scale(self, unconstrained: Array) -> Array:
        return jax.nn.softplus(unconstrained + self.scale_offset) + self.min_scale

    def __call__(self, x: Array, context: Array, *, inverse: bool) -> tuple[Array, Array]:
        if not inverse:
            out = self.conditioner(x, context)
            out = out.reshape(out.shape[:-1] + (self.dim, 2))
            scale = self._scale(out[..., 1])
            return x * scale + out[..., 0], jnp.sum(jnp.log(scale), axis=-1)
        # Inverse: pass j recovers dimension j from the already recovered x[:j].
        z = x
        shape = jnp.broadcast_shapes(z.shape, context.shape[:-1] + (self.dim,))

        def body(j, carry):
            out, total = carry
            params = self.conditioner.output_block(self.conditioner.hidden(out, context), j)
            scale = self._scale(params[..., 1:])
            z_j = jax.lax.dynamic_slice_in_dim(z, j, 1, axis=-1)
            out = jax.lax.dynamic_update_slice_in_dim(
                out, (z_j - params[..., :1]) / scale, j, axis=-1
            )
            return out, total - jnp.log(scale[..., 0])

        init = (jnp.zeros(shape, z.dtype), jnp.zeros(shape[:-1], z.dtype))
        return jax.lax.fori_loop(0, self.dim, body, init)


class MaskedAutoregressiveFlow(ConditionalFlow):
    """Conditional masked autoregressive flow ``q(theta | context)``.

    Args:
        dim: dimension of ``theta`` (z-scored, unconstrained).
        context_dim: dimension of the context (at least 1).
        rngs: random streams for the initial weights.
        num_transforms: number of affine MADE layers.
        hidden_features: width of the MADE hidden layers.
        num_hidden_layers: hidden layers per MADE.
        activation: MADE activation (``"tanh"`` as in sbi's MAF, or ``"relu"``,
            ``"gelu"``, ``"silu"``, ``"elu"``).
        min_scale: floor of each layer's scale (data -> noise direction).
        permutation: ``"reverse"`` or ``"random"``, applied between layers.
        permutation_seed: numpy seed of the ``"random"`` permutations.

    Raises:
        ValueError: a hyperparameter out of range.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> flow = MaskedAutoregressiveFlow(2, 3, rngs=nnx.Rngs(0), num_transforms=2)
        >>> flow.log_prob(jnp.zeros((4, 2)), jnp.ones((4, 3))).shape
        (4,)

    References:
        Papamakarios et al. (2017), https://arxiv.org/abs/1705.07057.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        *,
        rngs: nnx.Rngs,
        num_transforms: int = 5,
        hidden_features: int = 50,
        num_hidden_layers: int = 2,
        activation: str = "tanh",
        min_scale: float = 1e-3,
        permutation: str = "reverse",
        permutation_seed: int = 0,
    ):
        self._init_dims(dim, context_dim)
        num_transforms = check_positive_int(num_transforms, "num_transforms")
        if not 0.0 < min_scale < 1.0:
            raise ValueError(f"min_scale: expected in (0, 1); got {min_scale!r}")
        config = {
            "num_transforms": num_transforms,
            "hidden_features": int(hidden_features),
            "num_hidden_layers": int(num_hidden_layers),
            "activation": str(activation),
            "min_scale": float(min_scale),
            "permutation": str(permutation),
            "permutation_seed": int(permutation_seed),
        }
        # Static module attributes must be hashable (nnx graph definitions are).
        self._config = tuple(config.items())
        self.permutations = make_permutations(
            self.dim, num_transforms, permutation, permutation_seed
        )
        self.layers = nnx.List(
            [
                _AffineAutoregressive(
                    self.dim,
                    self.context_dim,
                    hidden_features=hidden_features,
                    num_hidden_layers=num_hidden_layers,
                    activation=activation,
                    min_scale=float(min_scale),
                    rngs=rngs,
                )
                for _ in range(num_transforms)
            ]
        )

    @property
    def config(self) -> dict[str, Any]:
        """Hyperparameters that rebuild this architecture (JSON-serialisable)."""
        return dict(self._config)
