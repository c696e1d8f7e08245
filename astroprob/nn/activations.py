"""Activation functions by name, for the networks of `astroprob.nn`.

``"relu"``, ``"leaky_relu"`` (slope 0.01), ``"elu"``, ``"gelu"``, ``"tanh"``,
``"sigmoid"``, ``"silu"`` act on each entry. ``"maxout"`` takes the maximum over
groups of `MAXOUT_PIECES` consecutive entries of the last axis, so a layer
followed by maxout must produce `MAXOUT_PIECES` times as many outputs; use
`width_factor` to size it.

References:
    Goodfellow et al. 2013, "Maxout networks", https://arxiv.org/abs/1302.4389;
    Clevert et al. 2015, "ELU", https://arxiv.org/abs/1511.07289.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array

__all__ = ["ACTIVATIONS", "MAXOUT_PIECES", "get_activation", "maxout", "width_factor"]

MAXOUT_PIECES = 2


def maxout(x: Array, pieces: int = MAXOUT_PIECES) -> Array:
    """Maximum over groups of ``pieces`` consecutive entries of the last axis.

    Args:
        x: ``(..., pieces * units)``.
        pieces: entries per group.

    Returns:
        ``(..., units)``.

    Raises:
        ValueError: if the last axis is not a multiple of ``pieces``.
    """
    if x.shape[-1] % pieces:
        raise ValueError(f"x: expected a last axis divisible by {pieces}; got {x.shape}")
    return jnp.max(x.reshape(*x.shape[:-1], x.shape[-1] // pieces, pieces), axis=-1)


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "leaky_relu": jax.nn.leaky_relu,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "silu": jax.nn.silu,
    "maxout": maxout,
}


def get_activation(name: str) -> Callable[[Array], Array]:
    """The activation called ``name`` (see `ACTIVATIONS`).

    Raises:
        ValueError: for an unknown name.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}; got {name!r}")
    return ACTIVATIONS[name]


def width_factor(name: str) -> int:
    """How many pre-activations an activation needs per output (`MAXOUT_PIECES` for maxout)."""
    get_activation(name)
    return MAXOUT_PIECES if name == "maxout" else 1
