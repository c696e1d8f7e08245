"""Argument checks for the public methods of the density estimators.

All checks look only at static shapes and dtypes, so under ``jax.jit`` they run
once at trace time and cost nothing afterwards.
"""

from __future__ import annotations

import operator

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array

__all__ = [
    "check_batch_pair",
    "check_context",
    "check_constructor",
    "check_num_samples",
    "check_rows",
]


def check_constructor(dim: object, context_dim: object) -> tuple[int, int]:
    """Validate ``dim >= 1`` and ``context_dim >= 1`` (plain integers).

    Raises:
        ValueError: naming the offending argument.
    """
    out = []
    for name, value in (("dim", dim), ("context_dim", context_dim)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name}: expected a positive int; got {value!r}")
        out.append(int(value))
    return out[0], out[1]


def _as_float(x: ArrayLike, name: str) -> Array:
    arr = jnp.asarray(x)
    if jnp.issubdtype(arr.dtype, jnp.floating):
        return arr
    if jnp.issubdtype(arr.dtype, jnp.integer) or arr.dtype == jnp.bool_:
        return arr.astype(jnp.float32)
    raise ValueError(f"{name}: expected a real floating-point array; got dtype {arr.dtype}")


def check_rows(x: ArrayLike, name: str, size: int, size_name: str) -> Array:
    """Check that ``x`` is ``(batch, size)`` and return it as a float array.

    Args:
        x: the argument.
        name: its name, used in the message.
        size: expected trailing size.
        size_name: how the trailing size is called (``"dim"``, ``"context_dim"``).

    Returns:
        ``x`` as a floating-point jax array (integer input is cast to float32).

    Raises:
        ValueError: wrong rank, wrong trailing size or non-real dtype.
    """
    arr = _as_float(x, name)
    if arr.ndim != 2 or arr.shape[1] != size:
        raise ValueError(
            f"{name}: expected an array of shape (batch, {size_name}={size}); "
            f"got shape {tuple(arr.shape)}"
        )
    return arr


def check_context(context: ArrayLike, context_dim: int) -> Array:
    """Check ``context`` is ``(batch, context_dim)``; see `check_rows`."""
    return check_rows(context, "context", context_dim, "context_dim")


def check_batch_pair(
    x: ArrayLike, name: str, dim: int, context: ArrayLike, context_dim: int
) -> tuple[Array, Array]:
    """Check ``x`` is ``(batch, dim)`` and ``context`` is ``(batch, context_dim)``.

    Raises:
        ValueError: wrong shapes, or the two batch sizes differ.
    """
    arr = check_rows(x, name, dim, "dim")
    ctx = check_context(context, context_dim)
    if arr.shape[0] != ctx.shape[0]:
        raise ValueError(
            f"context: expected batch size {arr.shape[0]} (the batch size of {name}); "
            f"got {ctx.shape[0]}"
        )
    return arr, ctx


def check_num_samples(num_samples: object) -> int:
    """Check that ``num_samples`` is a positive (static) Python integer.

    Raises:
        ValueError: otherwise (including ``bool`` and traced values).
    """
    ok = not isinstance(num_samples, bool)
    if ok:
        try:
            value = operator.index(num_samples)
        except TypeError:
            ok = False
    if not ok or value < 1:
        raise ValueError(f"num_samples: expected a positive int; got {num_samples!r}")
    return value
