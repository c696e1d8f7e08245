"""Group-equivariant CNNs for the rotation groups C_N and the dihedral groups D_N.

`EquivariantCNN` maps images ``(batch, height, width[, channels])`` to features
``(batch, features)`` that do not change when the image is rotated (by
``2 pi / N``) or mirrored (D_N), optionally followed by equivariant outputs
that rotate with the image, such as a spin-2 pair for the ellipticity
``(e1, e2)`` or a spin-1 pair for a position. It is built as follows:

1. a *lifting* convolution: the image is correlated with the |G| transformed
   copies ``psi(g^{-1} x)`` of each filter, giving a regular feature map
   ``(batch, height, width, |G|, channels)`` on which ``g`` acts by moving pixels
   and permuting the group axis (`astroprob.nn.groups`);
2. *group* convolutions, whose filters live on the plane and the group:
   ``psi_g(x, h) = psi(g^{-1} x, g^{-1} h)``; between stages a pooling
   (`symmetric_pool2`) that commutes with the square's symmetries halves the
   size; after each group convolution a layer normalisation whose statistics
   run over pixels, group and channels (so they are invariant) with a scale and
   shift per channel shared by the group axis; pointwise nonlinearities (they
   commute with pixel and group permutations);
3. *pooling to vectors*: per channel and group element, the mean over pixels,
   the first moments ``mean(f * (x, y))`` expressed in the element's own
   frame (``g^{-1}`` times the moment), which keep where the light is (a centroid),
   and the means over soft concentric rings about the image centre (an azimuthally
   averaged radial profile, which keeps how far from the centre the features
   are: sizes and concentrations); all are again regular, i.e. permuted by the
   group, because the square's symmetries map every ring onto itself;
4. an *invariant head*: mean and max over the group axis (group pooling), then
   an MLP; optionally (``input_rings``) it also reads the input image's own
   mean and radial profile, which keep its brightness (the layer
   normalisations divide the brightness out of the feature maps); and
   *equivariant heads*: a per-element MLP ``h_g`` of the mean and moments
   then ``sum_g rho(g) A h_g``, which transforms by ``rho`` exactly, by
   construction.

Filters are expanded in a fixed basis and transformed by resampling it at
``g^{-1} x``. When N divides 4 (C_1, C_2, C_4, D_1, D_2, D_4) the basis is one
pixel per weight and every ``g`` maps the pixel grid onto itself, so the network
is equivariant to float round-off. For other N (C_8, D_8, ...) the basis is
steerable (Gaussian rings times circular harmonics ``cos(m phi), sin(m phi)``,
evaluated at the rotated points); rotations that are not a multiple of 90 deg
are then only approximately symmetries of the sampled image, and the residual
error is measured in ``docs/embeddings.md`` and bounded by the tests.

References:
    Cohen & Welling 2016, "Group equivariant convolutional networks", arXiv:1602.07576;
    Weiler, Hamprecht & Storath 2018, "Learning steerable filters for rotation
    equivariant CNNs", arXiv:1711.07289; Weiler & Cesa 2019, "General E(2)-equivariant
    steerable CNNs", arXiv:1911.08251.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from astroprob.nn._conv import conv2d_same, symmetric_pool2
from astroprob.nn.activations import get_activation, width_factor
from astroprob.nn.groups import Group, as_group

__all__ = [
    "EquivariantCNN",
    "EquivariantClassifier",
    "GroupConv",
    "GroupLayerNorm",
    "LiftingConv",
    "filter_basis",
    "input_profile",
    "regular_vectors",
    "ring_weights",
]

_Images = Float[Array, "batch *image"]
_Regular = Float[Array, "batch h w g c"]

RING_WIDTH = 0.6
"""Gaussian width (pixels) of the radial rings of the steerable basis."""

FREQUENCIES_PER_RING = 1
"""The steerable basis keeps angular frequencies ``m <= FREQUENCIES_PER_RING * r`` on ring ``r``."""


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer; got {value!r}")


@functools.lru_cache(maxsize=64)
def filter_basis(group: Group, size: int, kind: str) -> np.ndarray:
    """Filter basis transformed by each group element, ``(order, num_basis, size, size)``.

    ``basis[g, b]`` samples ``phi_b(g^{-1} x)`` on the ``size x size`` grid of
    offsets (row = ``y``, column = ``x``), so a filter ``sum_b w_b phi_b`` becomes
    ``sum_b w_b basis[g, b]`` after the action of ``g``.

    Args:
        group: the group.
        size: odd filter size in pixels.
        kind: ``"pixel"`` (one delta per pixel; only for groups that map the grid
            onto itself) or ``"steerable"`` (rings of radius 0, 1, ... ``(size-1)/2``,
            width `RING_WIDTH`, times ``cos(m phi)`` and ``sin(m phi)`` for
            ``m <= FREQUENCIES_PER_RING r``; each basis function has unit norm).

    Raises:
        ValueError: for an even size, an unknown kind, or a pixel basis of a
            group that does not map the grid onto itself.
    """
    _check_positive("kernel_size", size)
    if size % 2 == 0:
        raise ValueError(f"kernel_size: expected an odd number; got {size}")
    half = (size - 1) / 2
    ys, xs = np.mgrid[:size, :size].astype(float) - half
    points = np.stack([xs.ravel(), ys.ravel()])  # (2, size^2) as (x, y)
    transformed = [group.matrix(group.inverse(g)) @ points for g in range(group.order)]
    if kind == "pixel":
        if not group.grid_exact:
            raise ValueError(
                f"basis: 'pixel' needs a group that maps the pixel grid onto itself (C1, C2, C4, "
                f"D1, D2, D4); got {group.name}; use 'steerable'"
            )
        out = np.zeros((group.order, size * size, size * size))
        for g, (sx, sy) in enumerate(transformed):
            source = np.rint(sy + half).astype(int) * size + np.rint(sx + half).astype(int)
            out[g, source, np.arange(size * size)] = 1.0
        out = out.reshape(group.order, size * size, size, size)
        out.setflags(write=False)  # cached: shared by every caller
        return out
    if kind != "steerable":
        raise ValueError(f"basis: expected 'pixel' or 'steerable'; got {kind!r}")

    def evaluate(sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
        radius = np.hypot(sx, sy)
        phi = np.arctan2(sy, sx)
        functions = []
        for ring in range(int(half) + 1):
            profile = np.exp(-0.5 * ((radius - ring) / RING_WIDTH) ** 2)
            functions.append(profile)
            for m in range(1, FREQUENCIES_PER_RING * ring + 1):
                at_origin = radius < 1e-9  # no direction there: harmonics m >= 1 vanish
                functions.append(np.where(at_origin, 0.0, profile * np.cos(m * phi)))
                functions.append(np.where(at_origin, 0.0, profile * np.sin(m * phi)))
        return np.stack(functions)

    norms = np.linalg.norm(evaluate(*points), axis=1, keepdims=True)
    out = np.stack([evaluate(sx, sy) / norms for sx, sy in transformed])
    out = out.reshape(group.order, -1, size, size)
    out.setflags(write=False)  # cached: shared by every caller
    return out


def _basis_kind(group: Group, basis: str) -> str:
    if basis == "auto":
        return "pixel" if group.grid_exact else "steerable"
    return basis


class LiftingConv(nnx.Module):
    """Images ``(batch, h, w, in)`` to regular feature maps ``(batch, h, w, |G|, out)``.

    Args:
        group: the group.
        in_channels, out_channels: channel counts.
        kernel_size: odd filter size.
        basis: ``"auto"`` (pixel when the group maps the grid onto itself,
            else steerable), ``"pixel"`` or ``"steerable"``.
        rngs: random streams for the initial weights.
    """

    def __init__(
        self,
        group: Group | str,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 5,
        basis: str = "auto",
        rngs: nnx.Rngs,
    ):
        self.group = as_group(group)
        self.kernel_size = kernel_size
        self.basis = _basis_kind(self.group, basis)
        num_basis = filter_basis(self.group, kernel_size, self.basis).shape[1]
        std = math.sqrt(2.0 / (num_basis * in_channels))
        shape = (num_basis, in_channels, out_channels)
        self.weight = nnx.Param(std * jax.random.normal(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((out_channels,)))

    def kernel(self) -> Float[Array, "k k cin gcout"]:
        """The expanded filter bank ``(k, k, in, |G| * out)``, group-major on the output axis."""
        basis = jnp.asarray(filter_basis(self.group, self.kernel_size, self.basis), jnp.float32)
        k = self.kernel_size
        kernel = jnp.einsum("gbuv,bio->uvigo", basis, self.weight[...])
        return kernel.reshape(k, k, kernel.shape[2], -1)

    def __call__(self, x: Float[Array, "batch h w cin"]) -> Float[Array, "batch h w g cout"]:
        """Lift a batch of images."""
        out = conv2d_same(x, self.kernel())
        out = out.reshape(*out.shape[:3], self.group.order, -1)
        return out + self.bias[...]


class GroupConv(nnx.Module):
    """Regular feature maps ``(batch, h, w, |G|, in)`` to ``(batch, h, w, |G|, out)``.

    Args:
        group: the group.
        in_channels, out_channels: channel counts.
        kernel_size: odd filter size.
        basis: as for `LiftingConv`.
        rngs: random streams for the initial weights.
    """

    def __init__(
        self,
        group: Group | str,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        basis: str = "auto",
        rngs: nnx.Rngs,
    ):
        self.group = as_group(group)
        self.kernel_size = kernel_size
        self.basis = _basis_kind(self.group, basis)
        num_basis = filter_basis(self.group, kernel_size, self.basis).shape[1]
        order = self.group.order
        std = math.sqrt(2.0 / (num_basis * in_channels * order))
        shape = (num_basis, order, in_channels, out_channels)
        self.weight = nnx.Param(std * jax.random.normal(rngs.params(), shape))
        self.bias = nnx.Param(jnp.zeros((out_channels,)))

    def kernel(self) -> Float[Array, "k k gcin gcout"]:
        """The expanded filter bank ``(k, k, |G| * in, |G| * out)``, group-major on both axes."""
        basis = jnp.asarray(filter_basis(self.group, self.kernel_size, self.basis), jnp.float32)
        # psi_g(x, h) = psi(g^{-1} x, g^{-1} h): resample the plane, permute the group axis.
        permuted = self.weight[...][:, self.group.inverse_table()]  # (b, g, h, in, out)
        kernel = jnp.einsum("gbuv,bghio->uvhigo", basis, permuted)
        k, order = self.kernel_size, self.group.order
        return kernel.reshape(k, k, order * kernel.shape[3], order * kernel.shape[5])

    def __call__(self, f: Float[Array, "batch h w g cin"]) -> Float[Array, "batch h w g cout"]:
        """Convolve a batch of regular feature maps."""
        batch, height, width, order, channels = f.shape
        out = conv2d_same(f.reshape(batch, height, width, order * channels), self.kernel())
        return out.reshape(batch, height, width, order, -1) + self.bias[...]


class GroupLayerNorm(nnx.Module):
    """Layer normalisation of regular feature maps that commutes with the group.

    Mean and variance run over pixels, group axis and channels of each example;
    the learned scale and shift are per channel and shared by the group axis.
    """

    def __init__(self, channels: int, *, epsilon: float = 1e-5):
        self.scale = nnx.Param(jnp.ones((channels,)))
        self.shift = nnx.Param(jnp.zeros((channels,)))
        self.epsilon = epsilon

    def __call__(self, f: _Regular) -> _Regular:
        """Normalise ``(batch, h, w, |G|, channels)``."""
        axes = (1, 2, 3, 4)
        mean = jnp.mean(f, axis=axes, keepdims=True)
        var = jnp.mean((f - mean) ** 2, axis=axes, keepdims=True)
        return (f - mean) * jax.lax.rsqrt(var + self.epsilon) * self.scale[...] + self.shift[...]


def ring_weights(height: int, width: int, rings: int) -> np.ndarray:
    """Averaging weights ``(rings, height, width)`` over concentric rings about the centre.

    With ``r`` the distance of a pixel centre from the image centre in units of
    half the image side, ring ``k`` is the hat function of ``r`` centred on
    ``k / (rings - 1)`` (``r = 0`` for a single ring) that falls linearly to zero
    at the neighbouring centres; beyond ``r = 1`` (the corners) the last ring
    takes the full weight. Soft rings change smoothly with the radius, so
    rotations off the pixel grid (C_8, ...) move the pooled values only a little.
    Each ring's weights are normalised to sum to 1 (an empty ring, possible on a
    tiny map, has all zeros). Rotations by 90 deg and mirrorings of a square map
    send every ring onto itself, since they keep distances to the centre.
    """
    half = max(height - 1, width - 1, 1) / 2
    ys, xs = np.mgrid[:height, :width].astype(float)
    radius = np.hypot(xs - (width - 1) / 2, ys - (height - 1) / 2) / half
    # Round first, so that pixels at the same distance (related by a symmetry)
    # get bit-identical weights despite round-off.
    position = np.minimum(np.round(radius * max(rings - 1, 0), 9), rings - 1)
    weights = np.maximum(1.0 - np.abs(position[None] - np.arange(rings)[:, None, None]), 0.0)
    return weights / np.maximum(weights.sum(axis=(1, 2), keepdims=True), 1e-12)


def input_profile(x: Float[Array, "batch h w c"], rings: int) -> Float[Array, "batch k"]:
    """The image's mean and its means over ``rings`` concentric rings, per channel.

    Returns ``(batch, (1 + rings) * channels)``: per channel the pixel mean,
    then the ring means (`ring_weights`), i.e. the azimuthally averaged radial
    profile. They are linear in the image, so they keep its brightness, and the
    symmetries of the square leave them unchanged (off the pixel grid, C_8 and
    the like, nearly).
    """
    batch, height, width, channels = x.shape
    weights = jnp.asarray(ring_weights(height, width, rings), x.dtype)
    profile = jnp.einsum("bhwc,rhw->bcr", x, weights)
    mean = jnp.mean(x, axis=(1, 2))[..., None]
    return jnp.concatenate([mean, profile], axis=-1).reshape(batch, (1 + rings) * channels)


def regular_vectors(group: Group, f: _Regular, rings: int = 0) -> Float[Array, "batch g k"]:
    """Pool a regular feature map over pixels into regular vectors ``(batch, |G|, (3 + rings) C)``.

    Per channel and group element ``g``: the pixel mean of ``f``, the first
    moment ``mean(f * (x, y))`` (coordinates in units of half the image side),
    rotated into ``g``'s frame by ``g^{-1}``, and the means over ``rings``
    concentric rings (`ring_weights`). All transform like ``f``'s group axis.
    """
    batch, height, width, order, channels = f.shape
    half = max(height - 1, width - 1, 1) / 2
    ys, xs = np.mgrid[:height, :width].astype(float)
    coords = np.stack([(xs - (width - 1) / 2) / half, (ys - (height - 1) / 2) / half], -1)
    inverse = np.stack([group.matrix(group.inverse(g)) for g in range(order)])  # (g, 2, 2)
    mean = jnp.mean(f, axis=(1, 2))
    moment = jnp.einsum("bhwgc,hwa->bgca", f, jnp.asarray(coords, f.dtype)) / (height * width)
    moment = jnp.einsum("gda,bgca->bgcd", jnp.asarray(inverse, f.dtype), moment)
    parts = [mean, moment.reshape(batch, order, 2 * channels)]
    if rings:
        weights = jnp.asarray(ring_weights(height, width, rings), f.dtype)
        profile = jnp.einsum("bhwgc,rhw->bgcr", f, weights)
        parts.append(profile.reshape(batch, order, channels * rings))
    return jnp.concatenate(parts, axis=-1)


def _output_dims(group: Group, outputs: Sequence[str]) -> list[int]:
    dims = []
    for name in outputs:
        if name in ("trivial", "regular"):
            raise ValueError(
                f"equivariant_outputs: expected 'sign' or 'spin<s>'; got {name!r} (invariant "
                "outputs are the `features` columns)"
            )
        try:
            dims.append(group.representation(name).shape[1])
        except ValueError as err:
            raise ValueError(f"equivariant_outputs: {err}") from err
    return dims


class EquivariantCNN(nnx.Module):
    """Group-equivariant CNN: ``(batch, height, width[, channels]) -> (batch, features + ...)``.

    The first ``features`` output columns are invariant under the group; then
    come the equivariant outputs in the order given (2 columns for ``"spinS"``, 1
    for ``"sign"``; see `Group.representation`). `output_slices` lists them.

    Args:
        group: ``"C4"``, ``"D4"``, ``"C8"``, ``"D8"``, ... or a `Group`.
        features: number of invariant output features.
        equivariant_outputs: representations of extra outputs, e.g.
            ``("spin2", "spin1")`` for ``(e1, e2)`` and a centroid ``(x0, y0)``,
            or ``("sign",)`` for a quantity that changes sign under mirroring
            (the handedness of a spiral).
        in_channels: channels of the input (1 for ``(batch, height, width)``).
        channels: channels per group element in each stage; the image is
            halved between stages.
        kernel_size: filter size of the lifting convolution.
        group_kernel_size: filter size of the group convolutions. (For C_8 and
            D_8, 3 gave a smaller rotation error than 5 in the measurements of
            ``docs/embeddings.md``.)
        hidden: width of the heads' hidden layers.
        activation: nonlinearity (`astroprob.nn.activations`); pointwise ones
            and maxout (over channels of one group element) are equivariant.
        normalize: whether to apply `GroupLayerNorm` after each group convolution.
        rings: number of concentric rings over which the last feature map is
            also averaged (`ring_weights`) for the invariant features, next to
            its mean and first moments; ``0`` pools with the mean and moments
            only.
        input_rings: number of concentric rings over which the *input* image
            is averaged for the invariant head, next to its mean
            (`input_profile`): its radial light profile, linear in its
            brightness. ``0`` (the default) leaves them out. The layer
            normalisations divide each image's brightness out of the feature
            maps, so without them a total flux is hard to learn; on
            `SersicGalaxy` (10³ simulations) ``input_rings=8`` cut the
            flux error of the posterior mean 4 times (docs/embeddings.md,
            "Which parameters the equivariant network loses").
        basis: filter basis, see `LiftingConv`.
        rngs: random streams for the initial weights.

    Raises:
        ValueError: for bad sizes, an unknown group, activation or output.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> net = EquivariantCNN("D4", features=4, equivariant_outputs=("spin2",),
        ...                      channels=(4, 4), rngs=nnx.Rngs(0))
        >>> net(jnp.zeros((2, 16, 16))).shape
        (2, 6)
    """

    def __init__(
        self,
        group: Group | str,
        *,
        features: int = 32,
        equivariant_outputs: Sequence[str] = (),
        in_channels: int = 1,
        channels: Sequence[int] = (8, 16, 16),
        kernel_size: int = 5,
        group_kernel_size: int = 3,
        hidden: int = 64,
        activation: str = "relu",
        normalize: bool = True,
        rings: int = 4,
        input_rings: int = 0,
        basis: str = "auto",
        rngs: nnx.Rngs,
    ):
        self.group = as_group(group)
        for name, value in (
            ("features", features),
            ("in_channels", in_channels),
            ("hidden", hidden),
        ):
            _check_positive(name, value)
        for name, value in (("kernel_size", kernel_size), ("group_kernel_size", group_kernel_size)):
            _check_positive(name, value)
            if value % 2 == 0:
                raise ValueError(f"{name}: expected an odd number; got {value}")
        channels = tuple(channels)
        for name, value in (("rings", rings), ("input_rings", input_rings)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected a non-negative int; got {value!r}")
        self.rings = rings
        self.input_rings = input_rings
        if not channels or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels
        ):
            raise ValueError(f"channels: expected positive integers; got {channels!r}")
        self.equivariant_outputs = tuple(equivariant_outputs)
        dims = _output_dims(self.group, self.equivariant_outputs)
        self.activation = activation
        self._act = get_activation(activation)
        factor = width_factor(activation)
        self.in_channels = in_channels
        self.num_features = features
        self.lift = LiftingConv(
            self.group,
            in_channels,
            factor * channels[0],
            kernel_size=kernel_size,
            basis=basis,
            rngs=rngs,
        )
        self.convs = nnx.List(
            GroupConv(
                self.group,
                c_in,
                factor * c_out,
                kernel_size=group_kernel_size,
                basis=basis,
                rngs=rngs,
            )
            for c_in, c_out in zip(channels[:-1], channels[1:], strict=True)
        )
        self.norms = (
            nnx.List(GroupLayerNorm(factor * c) for c in channels[1:]) if normalize else None
        )
        pooled = 3 * channels[-1]
        profile = (1 + input_rings) * in_channels if input_rings else 0
        self.invariant_hidden = nnx.Linear(
            2 * (pooled + rings * channels[-1]) + profile, factor * hidden, rngs=rngs
        )
        self.invariant_out = nnx.Linear(hidden, features, rngs=rngs)
        if dims:
            self.equivariant_hidden = nnx.Linear(pooled, factor * hidden, rngs=rngs)
            self.equivariant_out = nnx.List(
                nnx.Linear(hidden, d, use_bias=False, rngs=rngs) for d in dims
            )
        else:
            self.equivariant_hidden = None
            self.equivariant_out = None
        layout, start = [("invariant", 0, features)], features
        for name, d in zip(self.equivariant_outputs, dims, strict=True):
            layout.append((name, start, start + d))
            start += d
        self._layout = tuple(layout)
        self.num_outputs = start

    @property
    def output_slices(self) -> list[tuple[str, slice]]:
        """``(representation, columns)`` of each block of outputs, in order."""
        return [(name, slice(a, b)) for name, a, b in self._layout]

    def _images(self, x: _Images) -> Float[Array, "batch h w c"]:
        """``x`` as ``(batch, height, width, channels)``, or a clear error."""
        if x.ndim == 3 and self.in_channels == 1:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            channels = f", {self.in_channels}" if self.in_channels > 1 else "[, 1]"
            raise ValueError(f"x: expected (batch, height, width{channels}); got {x.shape}")
        return x

    def feature_maps(self, x: _Images) -> Float[Array, "batch h2 w2 g c"]:
        """The last regular feature map ``(batch, h', w', |G|, channels)``."""
        return self._feature_maps(self._images(x))

    def _feature_maps(self, x: Float[Array, "batch h w cin"]) -> Float[Array, "batch h2 w2 g c"]:
        f = self._act(self.lift(x))
        for i, conv in enumerate(self.convs):
            f = conv(symmetric_pool2(f))
            if self.norms is not None:
                f = self.norms[i](f)
            f = self._act(f)
        return f

    def __call__(self, x: _Images) -> Float[Array, "batch outputs"]:
        """Embed a batch of images: invariant features, then the equivariant outputs."""
        x = self._images(x)
        f = self._feature_maps(x)
        vectors = regular_vectors(self.group, f, self.rings)  # (batch, |G|, (3 + rings) C)
        parts = [jnp.mean(vectors, axis=1), jnp.max(vectors, axis=1)]
        if self.input_rings:
            parts.append(input_profile(x, self.input_rings))
        pooled = jnp.concatenate(parts, -1)
        outputs = [self.invariant_out(self._act(self.invariant_hidden(pooled)))]
        if self.equivariant_out is not None:
            # Mean and moments only: off the pixel grid (C_8, ...) the ring means of
            # one group element move more under rotations than their group average.
            moments = vectors[..., : 3 * f.shape[-1]]
            h = self._act(self.equivariant_hidden(moments))  # (batch, |G|, hidden)
            for name, layer in zip(self.equivariant_outputs, self.equivariant_out, strict=True):
                rho = jnp.asarray(self.group.representation(name), h.dtype)  # (|G|, d, d)
                outputs.append(jnp.einsum("gde,bge->bd", rho, layer(h)))
        return jnp.concatenate(outputs, axis=-1)


class EquivariantClassifier(nnx.Module):
    """Class logits ``(batch, num_classes)`` invariant under rotations, with mirror pairs.

    Classes that are mirror images of each other (a clockwise and an
    anticlockwise spiral) get logits ``a + b`` and ``a - b``, with ``a``
    invariant and ``b`` changing sign under reflections (a ``"sign"`` output of
    `EquivariantCNN`): mirroring the image swaps their logits (and softmax
    probabilities) exactly, by construction. All other logits are invariant.

    Args:
        group: a dihedral group (``"D4"``, ``"D8"``, ...) when ``mirror_pairs``
            is given, else any group.
        num_classes: number of classes.
        mirror_pairs: pairs ``(i, j)`` of classes swapped by a reflection.
        rngs: random streams for the initial weights.
        **options: further arguments of `EquivariantCNN` (``in_channels``,
            ``channels``, ...).

    Raises:
        ValueError: for pairs out of range or overlapping, or mirror pairs on a
            cyclic group.
    """

    def __init__(
        self,
        group: Group | str,
        num_classes: int,
        *,
        mirror_pairs: Sequence[tuple[int, int]] = (),
        rngs: nnx.Rngs,
        **options: object,
    ):
        _check_positive("num_classes", num_classes)
        pairs = [tuple(p) for p in mirror_pairs]
        flat = [c for p in pairs for c in p]
        if (
            any(len(p) != 2 for p in pairs)
            or len(set(flat)) != len(flat)
            or not all(isinstance(c, int) and 0 <= c < num_classes for c in flat)
        ):
            raise ValueError(
                f"mirror_pairs: expected disjoint pairs of class indices in [0, {num_classes}); "
                f"got {mirror_pairs!r}"
            )
        group = as_group(group)
        if pairs and not group.reflections:
            raise ValueError(f"mirror_pairs: need a dihedral group; got {group.name}")
        self.num_classes = num_classes
        self.mirror_pairs = tuple(pairs)
        self.single = tuple(c for c in range(num_classes) if c not in flat)
        self.cnn = EquivariantCNN(
            group,
            features=len(self.single) + len(pairs),
            equivariant_outputs=("sign",) * len(pairs),
            rngs=rngs,
            **options,
        )

    def __call__(self, x: _Images) -> Float[Array, "batch classes"]:
        """Logits of a batch of images."""
        out = self.cnn(x)
        n_single, n_pairs = len(self.single), len(self.mirror_pairs)
        logits = jnp.zeros((out.shape[0], self.num_classes), out.dtype)
        logits = logits.at[:, list(self.single)].set(out[:, :n_single])
        common = out[:, n_single : n_single + n_pairs]
        odd = out[:, n_single + n_pairs :]
        for p, (i, j) in enumerate(self.mirror_pairs):
            logits = logits.at[:, i].set(common[:, p] + odd[:, p])
            logits = logits.at[:, j].set(common[:, p] - odd[:, p])
        return logits
