"""A multilayer perceptron embedding: ``(batch, *shape) -> (batch, features)``.

The input is flattened after the batch axis, so the same module embeds
vectors, spectra or small images; with ``layer_norm=True`` each hidden layer is
normalised before its activation.

References:
    Rumelhart, Hinton & Williams 1986, "Learning representations by back-propagating errors".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from flax import nnx
from jaxtyping import Array, Float

from astroprob.nn.activations import get_activation, width_factor

__all__ = ["MLP"]


class MLP(nnx.Module):
    """Fully connected network ``(batch, *input_shape) -> (batch, features)``.

    Args:
        input_shape: shape of one input (an int for vectors).
        features: number of outputs.
        hidden: widths of the hidden layers.
        activation: name of the activation (`astroprob.nn.activations`),
            ``"gelu"`` by default.
        layer_norm: normalise each hidden layer before its activation.
        rngs: random streams for the initial weights.

    Raises:
        ValueError: for non-positive sizes or an unknown activation.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> MLP((4, 5), features=3, hidden=(8,), rngs=nnx.Rngs(0))(jnp.zeros((2, 4, 5))).shape
        (2, 3)
    """

    def __init__(
        self,
        input_shape: int | Sequence[int],
        *,
        features: int = 32,
        hidden: Sequence[int] = (64, 64),
        activation: str = "gelu",
        layer_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        widths = tuple(hidden)
        for name, values in (("input_shape", shape), ("hidden", widths), ("features", (features,))):
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
                raise ValueError(f"{name}: expected positive integers; got {values!r}")
        get_activation(activation)
        factor = width_factor(activation)
        self.input_shape = shape
        self.activation = activation
        self.num_features = features
        sizes = (math.prod(shape), *widths)
        self.layers = nnx.List(
            nnx.Linear(a, factor * b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.norms = (
            nnx.List(nnx.LayerNorm(factor * b, rngs=rngs) for b in widths) if layer_norm else None
        )
        self.out = nnx.Linear(sizes[-1], features, rngs=rngs)

    def __call__(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch features"]:
        """Embed a batch."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"x: expected (batch, {', '.join(map(str, self.input_shape))}); got {x.shape}"
            )
        act = get_activation(self.activation)
        h = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if self.norms is not None:
                h = self.norms[i](h)
            h = act(h)
        return self.out(h)
