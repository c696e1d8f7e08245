"""Row-chunked evaluation, so that drawing millions of samples stays memory-bounded.

Drawing ``num_samples`` for each of ``batch`` contexts pushes ``batch *
num_samples`` rows through every layer. Done in one piece, every intermediate
of shape ``(rows, dim, num_bins)`` or ``(rows, hidden_features)`` is materialised
in main memory; done in chunks of a few thousand rows with `jax.lax.map`, the
intermediates stay in cache and peak memory no longer grows with the number of
rows. Small problems (at most one chunk) skip the loop entirely.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array

__all__ = ["SAMPLE_CHUNK_ROWS", "map_rows_in_chunks"]

SAMPLE_CHUNK_ROWS = 8192
"""Rows per chunk when sampling."""


def map_rows_in_chunks(
    fn: Callable[..., Any], *arrays: Array, chunk_rows: int = SAMPLE_CHUNK_ROWS
) -> Any:
    """Apply ``fn`` to consecutive row-chunks of ``arrays`` and stitch the results.

    Args:
        fn: maps arrays with a leading axis of ``m`` rows to a pytree of arrays
            with a leading axis of ``m`` rows; rows must not interact.
        *arrays: arrays sharing the leading length ``R``.
        chunk_rows: rows per chunk.

    Returns:
        ``fn(*arrays)`` computed chunk by chunk (leading length ``R``). The last
        chunk is padded with zeros, which ``fn`` must tolerate.
    """
    num_rows = arrays[0].shape[0]
    if num_rows <= chunk_rows:
        return fn(*arrays)
    num_chunks = -(-num_rows // chunk_rows)
    pad = num_chunks * chunk_rows - num_rows

    def split(a: Array) -> Array:
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape((num_chunks, chunk_rows) + a.shape[1:])

    out = jax.lax.map(lambda xs: fn(*xs), tuple(split(a) for a in arrays))

    def stitch(o: Array) -> Array:
        return o.reshape((num_chunks * chunk_rows,) + o.shape[2:])[:num_rows]

    return jax.tree.map(stitch, out)
