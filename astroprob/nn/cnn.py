"""A plain convolutional embedding network for images, e.g. galaxy stamps.

`ConvEmbedding` maps images ``(batch, height, width)`` (or with a trailing
channel axis) to summary features ``(batch, features)``, the interface
`astroprob.NPE` expects of ``embedding=``. Each stage is ``convs_per_stage``
3×3 convolutions with an activation (GELU by default; see
`astroprob.nn.activations`), optionally ``residual_blocks`` `ResidualBlock` layers,
and a 2×2 average or max pooling; the last
feature map is flattened, so the summary keeps where things are in the stamp (a
centroid, an orientation), and a two-layer MLP maps it to the features. The
defaults are small enough to train on a few thousand 32×32 stamps in minutes
on a laptop CPU.

It is not equivariant to rotations; for that see the equivariant networks.

The 3×3 convolutions are written as a patch matrix times a kernel (im2col,
`astroprob.nn._conv.conv2d_same`, shared with the equivariant layers) rather
than with ``lax.conv``: NPE trains inside one compiled ``lax.scan`` over
minibatches, and on CPU XLA runs ``lax.conv`` inside such a loop about ten
times slower than the same convolution as a matrix product (measured with
jax 0.10: 11.6 s against 1.2 s per epoch of 1,800 32×32 stamps).

References:
    LeCun et al. (1998), "Gradient-based learning applied to document recognition".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from astroprob.nn._conv import conv2d_same
from astroprob.nn.activations import get_activation, width_factor

__all__ = ["ConvEmbedding", "ResidualBlock"]

_Images = Float[Array, "batch *image"]


class _Conv3x3(nnx.Module):
    """3×3 convolution, "same" padding, stride 1, as patches @ kernel."""

    def __init__(self, in_channels: int, out_channels: int, *, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (9 * in_channels, out_channels)))
        self.bias = nnx.Param(jnp.zeros((out_channels,)))

    def __call__(self, x: Float[Array, "batch h w c"]) -> Float[Array, "batch h w d"]:
        # The kernel's rows are ordered (row, column, channel), as conv2d_same's patches.
        kernel = self.kernel[...].reshape(3, 3, x.shape[-1], -1)
        return conv2d_same(x, kernel) + self.bias[...]


def _avg_pool_2x2(x: Float[Array, "batch h w c"]) -> Float[Array, "batch h2 w2 c"]:
    batch, height, width, channels = x.shape
    x = x[:, : 2 * (height // 2), : 2 * (width // 2), :]
    return x.reshape(batch, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))


def _max_pool_2x2(x: Float[Array, "batch h w c"]) -> Float[Array, "batch h2 w2 c"]:
    batch, height, width, channels = x.shape
    x = x[:, : 2 * (height // 2), : 2 * (width // 2), :]
    return x.reshape(batch, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))


_POOLINGS = {"avg": _avg_pool_2x2, "max": _max_pool_2x2}


class ResidualBlock(nnx.Module):
    """``act(x + conv(act(conv(x))))`` with two 3×3 convolutions, ``(batch, h, w, c)`` kept.

    Args:
        channels: channels in and out.
        activation: name of the activation (`astroprob.nn.activations`).
        rngs: random streams for the initial weights.

    References:
        He et al. 2016, "Deep residual learning for image recognition", arXiv:1512.03385.
    """

    def __init__(self, channels: int, *, activation: str = "gelu", rngs: nnx.Rngs):
        factor = width_factor(activation)
        self.activation = activation
        self.conv_a = _Conv3x3(channels, factor * channels, rngs=rngs)
        self.conv_b = _Conv3x3(channels, factor * channels, rngs=rngs)
        # Start close to the identity: the second convolution begins small.
        self.conv_b.kernel[...] = 0.1 * self.conv_b.kernel[...]

    def __call__(self, x: Float[Array, "batch h w c"]) -> Float[Array, "batch h w c"]:
        """Apply the block."""
        act = get_activation(self.activation)
        if self.activation == "maxout":
            # maxout halves the width; the skip path must match it.
            return act(jnp.repeat(x, 2, axis=-1) + self.conv_b(act(self.conv_a(x))))
        return act(x + self.conv_b(act(self.conv_a(x))))


class ConvEmbedding(nnx.Module):
    """CNN: ``(batch, height, width[, channels]) -> (batch, features)``.

    Args:
        image_shape: ``(height, width)`` of the input images.
        features: number of output features.
        channels: channels of each stage; the image is halved after each.
        convs_per_stage: convolutions in each stage.
        hidden: width of the hidden layer of the final MLP.
        in_channels: channels of the input (1 for a ``(batch, height, width)`` input).
        activation: ``"gelu"`` (default), ``"relu"``, ``"leaky_relu"``, ``"elu"``,
            ``"tanh"``, ``"sigmoid"``, ``"silu"`` or ``"maxout"``.
        pooling: ``"avg"`` (default) or ``"max"``, 2×2 after each stage.
        residual_blocks: `ResidualBlock` layers at the end of each stage (default 0).
        rngs: Flax random-number streams for the initial weights.

    Raises:
        ValueError: if the image is too small for the number of stages, a
            size is not a positive integer, or an option is unknown.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> net = ConvEmbedding((32, 32), features=8, channels=(4, 8), rngs=nnx.Rngs(0))
        >>> net(jnp.zeros((2, 32, 32))).shape
        (2, 8)
    """

    def __init__(
        self,
        image_shape: tuple[int, int],
        *,
        features: int = 32,
        channels: Sequence[int] = (8, 16, 32),
        convs_per_stage: int = 1,
        hidden: int = 128,
        in_channels: int = 1,
        activation: str = "gelu",
        pooling: str = "avg",
        residual_blocks: int = 0,
        rngs: nnx.Rngs,
    ):
        get_activation(activation)
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling: expected one of {sorted(_POOLINGS)}; got {pooling!r}")
        if (
            isinstance(residual_blocks, bool)
            or not isinstance(residual_blocks, int)
            or (residual_blocks < 0)
        ):
            raise ValueError(
                f"residual_blocks: expected a non-negative integer; got {residual_blocks!r}"
            )
        image_shape = tuple(image_shape)
        channels = tuple(channels)
        sizes = {
            "features": features,
            "convs_per_stage": convs_per_stage,
            "hidden": hidden,
            "in_channels": in_channels,
        }
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer; got {value!r}")
        if not channels or not all(isinstance(c, int) and c >= 1 for c in channels):
            raise ValueError(f"channels: expected positive integers; got {channels!r}")
        if len(image_shape) != 2 or not all(isinstance(s, int) and s >= 1 for s in image_shape):
            raise ValueError(f"image_shape: expected (height, width); got {image_shape!r}")
        height, width = image_shape
        for _ in channels:
            height, width = height // 2, width // 2
        if height < 1 or width < 1:
            raise ValueError(
                f"image_shape: {image_shape} is too small for {len(channels)} halvings; "
                f"expected at least {2 ** len(channels)} pixels a side"
            )
        self.image_shape = image_shape
        self.in_channels = in_channels
        self.convs_per_stage = convs_per_stage
        self.activation = activation
        self.pooling = pooling
        self.residual_blocks = residual_blocks
        factor = width_factor(activation)
        self.convs = nnx.List()
        self.blocks = nnx.List()
        previous = in_channels
        for c in channels:
            for _ in range(convs_per_stage):
                self.convs.append(_Conv3x3(previous, factor * c, rngs=rngs))
                previous = c
            for _ in range(residual_blocks):
                self.blocks.append(ResidualBlock(c, activation=activation, rngs=rngs))
        flat = height * width * previous
        self.dense = nnx.Linear(flat, factor * hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, features, rngs=rngs)
        self.num_features = features

    def __call__(self, x: _Images) -> Float[Array, "batch features"]:
        """Embed a batch of images.

        Args:
            x: ``(batch, height, width)`` or ``(batch, height, width, in_channels)``.

        Returns:
            Features ``(batch, features)``.
        """
        if x.ndim == 3:
            x = x[..., None]
        if x.shape[1:] != (*self.image_shape, self.in_channels):
            raise ValueError(
                f"x: expected (batch, {self.image_shape[0]}, {self.image_shape[1]}"
                f"{', ' + str(self.in_channels) if self.in_channels > 1 else ''}); got {x.shape}"
            )
        act, pool = get_activation(self.activation), _POOLINGS[self.pooling]
        for i, conv in enumerate(self.convs):
            x = act(conv(x))
            if (i + 1) % self.convs_per_stage == 0:
                stage = i // self.convs_per_stage
                for j in range(self.residual_blocks):
                    x = self.blocks[stage * self.residual_blocks + j](x)
                x = pool(x)
        x = x.reshape(x.shape[0], math.prod(x.shape[1:]))
        return self.out(act(self.dense(x)))
