"""Building blocks of the VAE decoder: upsampling, rotation and the PSF convolution.

The decoder's 3×3 convolutions are `astroprob.nn.cnn`'s (a patch matrix times a
kernel, which XLA runs much faster than ``lax.conv`` inside the training loop's
``lax.scan`` on CPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from astroprob.nn.cnn import _Conv3x3 as Conv3x3


class FixedArray(nnx.Variable):
    """An array stored with the weights but never trained (data scale, PSF, frozen weights)."""


def upsample_2x(x: Float[Array, "b h w c"]) -> Float[Array, "b h2 w2 c"]:
    """Nearest-neighbour upsampling by two along height and width."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class ConvDecoder(nnx.Module):
    """Latent vector to image: MLP, reshape, then (upsample ×2, 3×3 conv, GELU) stages.

    Args:
        image_shape: ``(height, width)`` of the output; each divisible by
            ``2 ** len(channels)``.
        out_channels: bands of the output image.
        latent_dim: size of the latent vector.
        channels: channels of the stages, finest first (the mirror of the encoder).
        hidden: width of the hidden dense layer.
        rngs: random-number streams for the initial weights.
    """

    def __init__(
        self,
        image_shape: tuple[int, int],
        out_channels: int,
        latent_dim: int,
        channels: Sequence[int],
        hidden: int,
        *,
        rngs: nnx.Rngs,
    ):
        factor = 2 ** len(channels)
        self.start_shape = (image_shape[0] // factor, image_shape[1] // factor, channels[-1])
        self.dense = nnx.Linear(latent_dim, hidden, rngs=rngs)
        self.expand = nnx.Linear(
            hidden, self.start_shape[0] * self.start_shape[1] * channels[-1], rngs=rngs
        )
        self.convs = nnx.List()
        previous = channels[-1]
        for c in reversed(channels):
            self.convs.append(Conv3x3(previous, c, rngs=rngs))
            previous = c
        self.out = Conv3x3(previous, out_channels, rngs=rngs)

    def __call__(self, z: Float[Array, "b latent"]) -> Float[Array, "b h w c"]:
        x = jax.nn.gelu(self.expand(jax.nn.gelu(self.dense(z))))
        x = x.reshape(z.shape[0], *self.start_shape)
        for conv in self.convs:
            x = jax.nn.gelu(conv(upsample_2x(x)))
        return self.out(x)


def psf_convolve(
    images: Float[Array, "b h w c"], psf: Float[Array, "ph pw c"]
) -> Float[Array, "b h w c"]:
    """Linear (zero-padded, not periodic) convolution of each band with its PSF, "same" size.

    Equals ``scipy.signal.fftconvolve(image, psf, mode="same")`` band by band: the
    output pixel ``(i, j)`` is ``sum_{k,l} image[i - k + ph//2, j - l + pw//2] psf[k, l]``.

    Args:
        images: ``(batch, height, width, bands)``.
        psf: ``(psf_height, psf_width, bands)``; not renormalised.

    Returns:
        Convolved images ``(batch, height, width, bands)``.
    """
    height, width = images.shape[1], images.shape[2]
    ph, pw = psf.shape[0], psf.shape[1]
    full = (height + ph - 1, width + pw - 1)
    spectrum = jnp.fft.rfft2(images, s=full, axes=(1, 2)) * jnp.fft.rfft2(psf, s=full, axes=(0, 1))
    out = jnp.fft.irfft2(spectrum, s=full, axes=(1, 2))
    # scipy's "same" keeps the centre of the full output, which starts at (ph - 1) // 2.
    top, left = (ph - 1) // 2, (pw - 1) // 2
    return out[:, top : top + height, left : left + width, :]


def rotate_images(
    images: Float[Array, "b h w c"], angle: Float[Array, " b"]
) -> Float[Array, "b h w c"]:
    """Rotate each image counterclockwise by ``angle`` (radians) about the stamp centre.

    Bilinear interpolation, zero outside the stamp; the output pixel at
    ``p`` (relative to the centre, ``x`` along columns and ``y`` along rows)
    takes the input at ``R(-angle) p``. A rotation by ``π/2`` is exactly the
    pixel permutation of `astroprob.nn.groups.CyclicGroup(4)`'s element 1
    (up to rounding of ``cos(π/2)``).

    Args:
        images: ``(batch, height, width, bands)``.
        angle: ``(batch,)`` radians.
    """
    height, width = images.shape[1], images.shape[2]
    ys, xs = jnp.mgrid[:height, :width].astype(images.dtype)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    px, py = xs - cx, ys - cy

    def one(image: Array, a: Array) -> Array:
        cos, sin = jnp.cos(a), jnp.sin(a)
        coords = [-sin * px + cos * py + cy, cos * px + sin * py + cx]
        bands = [
            jax.scipy.ndimage.map_coordinates(image[..., k], coords, order=1, mode="constant")
            for k in range(image.shape[-1])
        ]
        return jnp.stack(bands, axis=-1)

    return jax.vmap(one)(images, angle.astype(images.dtype))
