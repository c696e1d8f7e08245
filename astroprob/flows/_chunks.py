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

__all__ = ["SAMPLE_CHUNK_ROWS", "map_rows_in_chunks", "map_samples_in_chunks"]

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


def map_samples_in_chunks(
    fn: Callable[[Array, Array], Any],
    noise: Array,
    context: Array,
    *,
    chunk_rows: int = SAMPLE_CHUNK_ROWS,
) -> Any:
    """Apply ``fn(noise_block, context_block)`` over chunks of ``(batch, num_samples)`` draws.

    Unlike `map_rows_in_chunks`, the context is never repeated per sample: each
    call sees ``noise_block`` of shape ``(b, m, dim)`` and ``context_block`` of
    shape ``(b, 1, context_dim)``, so that networks of the context alone run
    once per observation. Chunks hold about ``chunk_rows`` draws: whole
    observations when ``num_samples < chunk_rows``, slices of one observation's
    draws otherwise.

    Args:
        fn: maps ``(b, m, dim)`` noise and ``(b, 1, c)`` context to a pytree of
            arrays with leading dimensions ``(b, m)``; draws must not interact.
        noise: ``(batch, num_samples, dim)``.
        context: ``(batch, c)``.
        chunk_rows: draws per chunk.

    Returns:
        ``fn(noise, context[:, None])``, computed chunk by chunk. Padding (zeros)
        is cut off again.
    """
    batch, num_samples = noise.shape[:2]
    context = context[:, None, :]
    if batch * num_samples <= chunk_rows:
        return fn(noise, context)
    if num_samples < chunk_rows:
        # Whole observations per chunk.
        per_chunk = chunk_rows // num_samples
        num_chunks = -(-batch // per_chunk)
        pad = num_chunks * per_chunk - batch

        def split(a: Array) -> Array:
            a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
            return a.reshape((num_chunks, per_chunk) + a.shape[1:])

        out = jax.lax.map(lambda xs: fn(*xs), (split(noise), split(context)))
        return jax.tree.map(
            lambda o: o.reshape((num_chunks * per_chunk,) + o.shape[2:])[:batch], out
        )
    # Slices of one observation's draws per chunk.
    per_obs = -(-num_samples // chunk_rows)
    pad = per_obs * chunk_rows - num_samples
    noise = jnp.pad(noise, [(0, 0), (0, pad), (0, 0)])
    noise = noise.reshape(batch * per_obs, 1, chunk_rows, noise.shape[-1])
    context = jnp.repeat(context, per_obs, axis=0)[:, None]
    out = jax.lax.map(lambda xs: fn(*xs), (noise, context))
    return jax.tree.map(
        lambda o: o.reshape((batch, per_obs * chunk_rows) + o.shape[3:])[:, :num_samples], out
    )
