"""A permutation-invariant (Deep Sets) encoder for padded, masked multi-band light curves.

Each observation is embedded on its own by a small MLP together with a learned
vector for its band; masked mean, max and attention pooling over all
observations give a fixed-size summary that a second MLP maps to the features.
Attention pooling (a learned softmax weighting per head) lets the encoder read
off the features of particular points, e.g. those near the peak. Padded
entries are excluded from every reduction, so they cannot change the output.

Input layout (see `astroprob.tasks.supernova`): ``(batch, n_bands, max_points,
channels)`` whose last channel (``mask_channel``) is 1 for observations and 0 for
padding; the other channels are values such as time, flux and flux error.

The encoder works on the raw layout and on any increasing affine map of the
whole array, such as the global z-scoring that `astroprob.NPE` applies before
calling an embedding: the mask is recovered exactly as the entries at or above the
midpoint of the mask channel's range within each light curve (a light curve
without padding counts as fully observed), and each value channel also enters
rescaled to ``[0, 1]`` by its range over the observed entries, which that map
leaves unchanged. The latter puts faint and bright objects on one scale.

References:
    Zaheer et al. 2017, "Deep Sets", https://arxiv.org/abs/1703.06114;
    Lee et al. 2019, "Set Transformer" (attention pooling), https://arxiv.org/abs/1810.00825.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float

__all__ = ["LightCurveEncoder", "recover_mask"]

_Batch = Float[Array, "batch bands points channels"]


def recover_mask(
    mask_channel: Float[Array, "batch bands points"],
) -> Bool[Array, "batch bands points"]:
    """Boolean mask from a mask channel that may have been shifted and scaled.

    An entry is observed if its value is at least the midpoint of the smallest
    and largest value in its light curve; when all values are equal (no
    padding) every entry counts as observed.
    """
    low = jnp.min(mask_channel, axis=(1, 2), keepdims=True)
    high = jnp.max(mask_channel, axis=(1, 2), keepdims=True)
    return mask_channel >= 0.5 * (low + high)


def _masked_range_scale(values: Array, mask: Array) -> tuple[Array, Array, Array]:
    """Per light curve and channel: ``(values - min) / (max - min)``, min and max over the mask."""
    big = jnp.finfo(values.dtype).max
    m = mask[..., None]
    low = jnp.min(jnp.where(m, values, big), axis=(1, 2), keepdims=True)
    high = jnp.max(jnp.where(m, values, -big), axis=(1, 2), keepdims=True)
    span = high - low
    safe = jnp.where(span > 0, span, 1.0)
    scaled = jnp.where(m & (span > 0), (values - low) / safe, 0.0)
    return scaled, low[:, 0, 0], high[:, 0, 0]


class LightCurveEncoder(nnx.Module):
    """Deep Sets encoder: ``(batch, n_bands, max_points, channels) -> (batch, features)``.

    Args:
        num_bands: number of bands (rows of one light curve).
        num_channels: channels per entry, including the mask (4 for the
            supernova task: time, flux, flux_err, mask).
        features: size of the output.
        hidden: width of both MLPs.
        num_heads: attention-pooling heads (0 for mean and max pooling only).
        mask_channel: index of the mask channel.
        rngs: random state for the initial weights.

    Raises:
        ValueError: for non-positive sizes or a mask channel out of range.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> enc = LightCurveEncoder(4, features=8, hidden=16, rngs=nnx.Rngs(0))
        >>> enc(jnp.zeros((2, 4, 10, 4))).shape
        (2, 8)
    """

    def __init__(
        self,
        num_bands: int,
        *,
        num_channels: int = 4,
        features: int = 32,
        hidden: int = 64,
        num_heads: int = 4,
        mask_channel: int = -1,
        rngs: nnx.Rngs,
    ):
        for name, value, minimum in (
            ("num_bands", num_bands, 1),
            ("num_channels", num_channels, 2),
            ("features", features, 1),
            ("hidden", hidden, 1),
            ("num_heads", num_heads, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name}: expected an integer >= {minimum}; got {value!r}")
        if not -num_channels <= mask_channel < num_channels:
            raise ValueError(
                f"mask_channel: expected an index into {num_channels} channels; got {mask_channel}"
            )
        self.num_bands = num_bands
        self.num_channels = num_channels
        self.mask_channel = mask_channel % num_channels
        num_values = num_channels - 1
        # Per point: each value channel as given and range-scaled to [0, 1].
        self.point_in = nnx.Linear(2 * num_values, hidden, rngs=rngs)
        self.band_embedding = nnx.Param(0.1 * jax.random.normal(rngs.params(), (num_bands, hidden)))
        self.point_hidden = nnx.Linear(hidden, hidden, rngs=rngs)
        self.num_heads = num_heads
        self.attention = nnx.Linear(hidden, num_heads, rngs=rngs) if num_heads else None
        # Per light curve: mean, max and attention-weighted point features, each value
        # channel's observed minimum and maximum, and the log number of observations.
        summary = (2 + num_heads) * hidden + 2 * num_values + 1
        self.head_in = nnx.Linear(summary, hidden, rngs=rngs)
        self.head_out = nnx.Linear(hidden, features, rngs=rngs)

    def __call__(self, x: _Batch) -> Float[Array, "batch features"]:
        """Encode a batch of light curves; padded entries do not affect the result."""
        if x.ndim != 4 or x.shape[1] != self.num_bands or x.shape[3] != self.num_channels:
            raise ValueError(
                f"x: expected shape (batch, {self.num_bands}, max_points, {self.num_channels}); "
                f"got {x.shape}"
            )
        mask = recover_mask(x[..., self.mask_channel])
        values = jnp.delete(x, self.mask_channel, axis=-1, assume_unique_indices=True)
        # Zero the padded entries first, so that nothing from them reaches any gradient.
        values = jnp.where(mask[..., None], values, 0.0)
        scaled, low, high = _masked_range_scale(values, mask)

        h = self.point_in(jnp.concatenate([values, scaled], axis=-1))
        h = jax.nn.gelu(h + self.band_embedding[...][None, :, None, :])
        h = jax.nn.gelu(self.point_hidden(h))

        batch = x.shape[0]
        h = h.reshape(batch, -1, h.shape[-1])
        m = mask.reshape(batch, -1, 1)
        count = jnp.sum(m[..., 0], axis=1)
        # recover_mask leaves at least one observed entry, so no reduction below is empty.
        mean = jnp.sum(jnp.where(m, h, 0.0), axis=1) / count[:, None]
        big = jnp.finfo(h.dtype).max
        pooled = [mean, jnp.max(jnp.where(m, h, -big), axis=1)]
        if self.attention is not None:
            scores = jnp.where(m, self.attention(h), -jnp.inf)
            weights = jax.nn.softmax(scores, axis=1)
            pooled.append(jnp.einsum("bnk,bnh->bkh", weights, h).reshape(batch, -1))
        summary = jnp.concatenate([*pooled, low, high, jnp.log1p(count)[:, None]], axis=-1)
        return self.head_out(jax.nn.gelu(self.head_in(summary)))
