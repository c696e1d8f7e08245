"""The conditioner network shared by every density estimator: a two-input MLP.

``ConditionalMLP(x, context)`` is an MLP applied to the concatenation of ``x``
and ``context``, written with two first-layer matrices instead of a concatenation
so that ``x`` and ``context`` only need *broadcastable* leading dimensions. When a
flow draws ``n`` samples for each of ``B`` observations, ``x`` has shape
``(B, n, d)`` and ``context`` has shape ``(B, 1, c)``: the context projection is
computed once per observation instead of once per sample, and no repeated copy
of the context is ever built.

Subclasses may mask the kernels (see `astroprob.flows._made`).

`ConditionalMLP.columns` evaluates the same network with the features on the
leading axis, ``(in, *batch) -> (out, *batch)``: the flows' sampler works in
that layout, where the splines that follow operate on contiguous arrays of
draws (see `astroprob.flows.nsf`).
"""

# jaxtyping shape strings ("batch dim") are not Python expressions.
# ruff: noqa: F722

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

__all__ = [
    "ACTIVATIONS",
    "ConditionalMLP",
    "as_column",
    "get_activation",
    "lecun_normal",
    "linear_columns",
    "rows_as_columns",
    "zeros",
]

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
}
"""Activation functions a conditioner may use, by name."""


def get_activation(name: str) -> Callable[[Array], Array]:
    """Look up an activation by name.

    Raises:
        ValueError: if ``name`` is not a key of `ACTIVATIONS`.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}; got {name!r}")
    return ACTIVATIONS[name]


def as_column(vector: Array, ndim: int) -> Array:
    """A ``(n,)`` vector reshaped to ``(n, 1, ..., 1)`` (``ndim`` axes), for column layouts."""
    return vector.reshape(vector.shape + (1,) * (ndim - 1))


def rows_as_columns(rows: Array, batch_ndim: int) -> Array:
    """Rows ``(*cbatch, n)`` as columns ``(n, 1, ..., 1, *cbatch)`` with ``batch_ndim`` batch axes.

    The leading unit axes make ``cbatch`` broadcast against a column array's
    ``batch`` as it would against rows (aligned on the right).

    Raises:
        ValueError: if ``rows`` has more than ``batch_ndim`` batch axes.
    """
    extra = batch_ndim - (rows.ndim - 1)
    if extra < 0:
        raise ValueError(
            f"context: expected at most {batch_ndim} batch axes, as many as x; "
            f"got shape {rows.shape}"
        )
    columns = jnp.moveaxis(rows, -1, 0)
    return columns.reshape(columns.shape[:1] + (1,) * extra + columns.shape[1:])


def linear_columns(kernel: Array, x: Array) -> Array:
    """``x @ kernel`` in column layout: ``(in, out)`` and ``(in, *batch)`` -> ``(out, *batch)``."""
    return jnp.tensordot(kernel, x, axes=(0, 0))


def lecun_normal(key: Array, shape: tuple[int, ...], fan_in: int, scale: float = 1.0) -> Array:
    """Normal truncated at ±2σ, with variance ``scale / fan_in`` (fan-in given explicitly).

    The draw is made on the host by NumPy, from a generator seeded with the key's
    bits: the same key gives the same weights, and a layer of a new shape compiles
    nothing (``jax.random`` compiles its sampler once per shape, about 0.3 s each
    on CPU, which made building a flow take seconds). The key must therefore be
    concrete: build networks outside ``jax.jit`` and ``nnx.eval_shape``.
    """
    if isinstance(key, jax.core.Tracer):
        raise TypeError(
            "key: expected a concrete PRNG key; got a traced one (build networks "
            "outside jax.jit, jax.vmap and nnx.eval_shape)"
        )
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    z = rng.standard_normal(shape)
    outside = np.abs(z) > 2.0
    while outside.any():
        z[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(z) > 2.0
    std = np.sqrt(scale / max(fan_in, 1)) / 0.87962566103423978  # truncation correction
    return jax.device_put((std * z).astype(np.float32))


def zeros(shape: tuple[int, ...]) -> Array:
    """A float32 array of zeros, made on the host (no per-shape compilation)."""
    return jax.device_put(np.zeros(shape, np.float32))


class ConditionalMLP(nnx.Module):
    """MLP ``(x, context) -> out`` with ``num_hidden_layers`` hidden layers.

    Args:
        in_features: size of ``x`` (may be 0: the network then sees only the context).
        context_features: size of ``context`` (at least 1).
        out_features: size of the output.
        hidden_features: width of each hidden layer.
        num_hidden_layers: number of hidden layers (at least 1).
        activation: a key of `ACTIVATIONS`.
        rngs: random streams for the initial weights (``params`` stream).
        final_init_scale: variance scale of the output kernel; 0 makes the output
            layer start at exactly zero (weights and bias), which the flows use to
            start at the identity map.
    """

    def __init__(
        self,
        in_features: int,
        context_features: int,
        out_features: int,
        *,
        hidden_features: int,
        num_hidden_layers: int,
        activation: str,
        rngs: nnx.Rngs,
        final_init_scale: float = 0.0,
    ):
        get_activation(activation)
        if num_hidden_layers < 1:
            raise ValueError(f"num_hidden_layers: expected >= 1; got {num_hidden_layers}")
        if hidden_features < 1:
            raise ValueError(f"hidden_features: expected >= 1; got {hidden_features}")
        self.in_features = in_features
        self.context_features = context_features
        self.out_features = out_features
        self.activation = activation
        fan_in = in_features + context_features
        self.input_kernel = (
            nnx.Param(lecun_normal(rngs.params(), (in_features, hidden_features), fan_in))
            if in_features > 0
            else None
        )
        self.context_kernel = nnx.Param(
            lecun_normal(rngs.params(), (context_features, hidden_features), fan_in)
        )
        self.input_bias = nnx.Param(zeros((hidden_features,)))
        self.hidden_kernels = nnx.List(
            [
                nnx.Param(
                    lecun_normal(rngs.params(), (hidden_features, hidden_features), hidden_features)
                )
                for _ in range(num_hidden_layers - 1)
            ]
        )
        self.hidden_biases = nnx.List(
            [nnx.Param(zeros((hidden_features,))) for _ in range(num_hidden_layers - 1)]
        )
        if final_init_scale > 0.0:
            out_kernel = lecun_normal(
                rngs.params(), (hidden_features, out_features), hidden_features, final_init_scale
            )
        else:
            out_kernel = zeros((hidden_features, out_features))
        self.output_kernel = nnx.Param(out_kernel)
        self.output_bias = nnx.Param(zeros((out_features,)))

    def _masks(self) -> tuple[np.ndarray, ...] | None:
        """Static 0/1 masks for (input, hidden..., output) kernels; ``None``: dense."""
        return None

    def hidden(
        self, x: Float[Array, "*xbatch in"], context: Float[Array, "*cbatch ctx"]
    ) -> Float[Array, "*batch hidden"]:
        """Last hidden layer's activations.

        Args:
            x: ``(*xbatch, in_features)``.
            context: ``(*cbatch, context_features)``, ``cbatch`` broadcastable
                against ``xbatch``.

        Returns:
            ``(*batch, hidden_features)`` with ``batch`` the broadcast of both;
            when ``in_features == 0`` it is ``cbatch``.
        """
        act = get_activation(self.activation)
        input_kernel, hidden_kernels = self._kernels_masked()
        h = context @ self.context_kernel[...] + self.input_bias[...]
        if input_kernel is not None:
            h = x @ input_kernel + h
        h = act(h)
        for kernel, bias in zip(hidden_kernels, self.hidden_biases, strict=True):
            h = act(h @ kernel + bias[...])
        return h

    def _kernels_masked(self) -> tuple[Array | None, list[Array]]:
        """The input kernel (``None`` without ``x``) and the hidden kernels, masked if needed."""
        masks = self._masks()
        kernels = [k[...] for k in self.hidden_kernels]
        if masks is not None:
            kernels = [k * m for k, m in zip(kernels, masks[1:-1], strict=True)]
        if self.input_kernel is None:
            return None, kernels
        kernel = self.input_kernel[...]
        return (kernel if masks is None else kernel * masks[0]), kernels

    def columns(
        self, x: Float[Array, "in ..."], context: Float[Array, "*cbatch ctx"]
    ) -> Float[Array, "out ..."]:
        """`__call__` with the features on the leading axis (same numbers up to rounding).

        Args:
            x: ``(in_features, *xbatch)``.
            context: ``(*cbatch, context_features)`` (rows, as for `__call__`),
                ``cbatch`` broadcastable against ``xbatch`` and of at most as
                many axes.

        Returns:
            ``(out_features, *batch)`` with ``batch`` the broadcast of both;
            ``cbatch`` (with ``xbatch``'s number of axes) when ``in_features == 0``.
        """
        act = get_activation(self.activation)
        input_kernel, hidden_kernels = self._kernels_masked()
        h = context @ self.context_kernel[...] + self.input_bias[...]
        h = rows_as_columns(h, x.ndim - 1)
        if input_kernel is not None:
            h = linear_columns(input_kernel, x) + h
        h = act(h)
        for kernel, bias in zip(hidden_kernels, self.hidden_biases, strict=True):
            h = act(linear_columns(kernel, h) + as_column(bias[...], h.ndim))
        out = linear_columns(self.output_kernel_masked(), h)
        return out + as_column(self.output_bias[...], out.ndim)

    def output_kernel_masked(self) -> Array:
        """The output kernel ``(hidden_features, out_features)``, masked if needed."""
        masks = self._masks()
        k = self.output_kernel[...]
        return k if masks is None else k * masks[-1]

    def __call__(
        self, x: Float[Array, "*xbatch in"], context: Float[Array, "*cbatch ctx"]
    ) -> Float[Array, "*batch out"]:
        """Evaluate the network.

        Args:
            x: ``(*xbatch, in_features)``.
            context: ``(*cbatch, context_features)``, ``cbatch`` broadcastable
                against ``xbatch``.

        Returns:
            ``(*batch, out_features)`` with ``batch`` the broadcast of both; when
            ``in_features == 0`` it is ``cbatch``.
        """
        return self.hidden(x, context) @ self.output_kernel_masked() + self.output_bias[...]
