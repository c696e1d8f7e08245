"""Fourier-space rendering of PSF-convolved, pixel-integrated Sérsic galaxy images.

Why Fourier space: the image a detector records is the galaxy convolved with
the PSF and integrated over each pixel, i.e. samples at the pixel centres of
``galaxy ⊗ PSF ⊗ pixel box``. In Fourier space this is a product,
``flux · F(r_e |S k|; n) · PSF(k) · sinc(k_x Δ/2) sinc(k_y Δ/2) · exp(-i k·x0)``,
every factor of which is known exactly (see `_sersic_profile` and `_psf`). So
the pixel integration is exact even at the cusp of an ``n = 6`` profile, where
sub-pixel sampling in real space converges slowly; the shear ``S`` and the
centroid shift are exact too; and the cost per image is one spectrum on a fixed
grid plus one FFT, with no data-dependent shapes, so it vmaps, jits and
differentiates.

The grid: a periodic box of ``padding ×`` the stamp, whose spectrum is
evaluated at ``K × K`` aliases of each frequency and summed, which gives the
pixel-centre samples including the aliasing a real detector makes. ``K`` (the
oversampling) is the smallest factor for which ``PSF × pixel`` is below
``tolerance`` beyond ``π K / Δ``.

Wrap-around: an inverse FFT returns the image of a periodic box, so the wings
of a large, high-``n`` galaxy beyond the box come back in from the other side
(5 % of the flux in the worst of 200 prior draws with a box of twice the stamp).
These periodic images are subtracted in real space: the copies of the profile
centred ``wrap_rings`` boxes away or nearer (48 copies for the default 3
rings), evaluated at the pixel centres. They lie at least one stamp width from
any pixel, where the PSF and the pixel no longer change the profile, so the
unconvolved profile suffices; the correction brings the worst of 600 prior draws
under 0.3 % (and the median to 6e-6) at a fraction of the cost of a larger box.

Conventions: an image is ``(height, width)``; row ``i`` is at ``y = (i -
(height - 1)/2) Δ`` and column ``j`` at ``x = (j - (width - 1)/2) Δ``, so the
profile centre (``x0 = y0 = 0``) is the centre of the stamp (between pixels for
an even size). ``S = [[1 + g1, g2], [g2, 1 - g1]] / sqrt(1 - g²)`` is the
area-preserving shear of GalSim: the major axis lies at position angle ``β``
from ``+x`` towards ``+y``, with ``g1 + i g2 = |g| exp(2iβ)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from astroprob.tasks._psf import PSF, ImagePSF
from astroprob.tasks._sersic_profile import (
    SersicTable,
    fourier_profile,
    profile_row,
    real_space_constants,
)

__all__ = ["FourierLayout", "make_layout", "render_one"]

MAX_OVERSAMPLING = 8


def _good_fft_size(n: int) -> int:
    """Smallest ``m >= n`` whose prime factors are 2, 3 and 5."""
    m = max(int(n), 1)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


@dataclass(frozen=True, eq=False)
class FourierLayout:
    """The fixed Fourier grid of one task: stamp, box, oversampling and transfer function.

    The spectrum is evaluated at the ``K × K`` aliases of every frequency of the
    box's half spectrum and summed over them, which is the spectrum of the
    pixel-centre samples; one inverse FFT of the box then gives the image.

    Attributes:
        shape: stamp ``(height, width)`` in pixels.
        pixel_scale: pixel side in arcsec.
        oversampling: aliases per axis ``K``.
        padded_shape: periodic box ``(height, width)`` in pixels.
        kx: wavenumbers ``(K · (box width // 2 + 1),)``, alias-major, rad/arcsec.
        ky: wavenumbers ``(K · box height,)``, alias-major, rad/arcsec.
        transfer: PSF × pixel response × sub-pixel shift, ``(len(ky), len(kx))``, complex64.
        roll: shifts ``(rows, columns)`` that bring the stamp to the start of the box.
        x: pixel-centre ``x`` of the stamp columns, arcsec, ``(width,)``.
        y: pixel-centre ``y`` of the stamp rows, arcsec, ``(height,)``.
        replicas: offsets ``(num, 2)`` in arcsec, ``(x, y)``, of the periodic copies
            subtracted from the image (see the module docstring).
    """

    shape: tuple[int, int]
    pixel_scale: float
    oversampling: int
    padded_shape: tuple[int, int]
    kx: np.ndarray
    ky: np.ndarray
    transfer: np.ndarray
    roll: tuple[int, int]
    x: np.ndarray
    y: np.ndarray
    replicas: np.ndarray


def _pixel_response(k: np.ndarray, pixel_scale: float) -> np.ndarray:
    return np.sinc(k * pixel_scale / (2 * math.pi))


def choose_oversampling(psf: PSF, pixel_scale: float, tolerance: float) -> int:
    """Smallest ``K`` such that ``|PSF × pixel| < tolerance`` beyond ``π K / pixel_scale``.

    Raises:
        ValueError: if no ``K <= 8`` suffices (a PSF much narrower than a pixel).
    """
    nyquist = math.pi / pixel_scale
    for k_factor in range(1, MAX_OVERSAMPLING + 1):
        k_max = k_factor * nyquist
        if psf.band_limit is not None:
            if psf.band_limit <= k_max * (1 + 1e-9):
                return k_factor
            continue
        kx = np.linspace(k_max, 3 * k_max, 97)[None, :]
        ky = np.linspace(0.0, 3 * k_max, 193)[:, None]
        response = np.abs(psf.transfer(kx, ky))
        if not psf.includes_pixel:
            response = response * np.abs(_pixel_response(kx, pixel_scale))
            response = response * np.abs(_pixel_response(ky, pixel_scale))
        if response.max() < tolerance:
            return k_factor
    raise ValueError(
        f"psf: its transform is still above {tolerance} at {MAX_OVERSAMPLING} times the "
        f"Nyquist frequency of pixel_scale={pixel_scale} arcsec; expected a PSF at least "
        "about a quarter of a pixel wide"
    )


def make_layout(
    shape: tuple[int, int],
    pixel_scale: float,
    psf: PSF,
    *,
    padding: float = 2.0,
    tolerance: float = 1e-4,
    wrap_rings: int = 3,
) -> FourierLayout:
    """Build the Fourier grid and the PSF × pixel transfer function for a task.

    Args:
        shape: stamp ``(height, width)`` in pixels.
        pixel_scale: pixel side in arcsec.
        psf: the PSF.
        padding: side of the periodic box over the side of the stamp (>= 1).
        tolerance: largest ``|PSF × pixel|`` left out beyond the aliased band.
        wrap_rings: rings of periodic copies to subtract (0 for none).

    Raises:
        ValueError: if an effective PSF image (``includes_pixel``) has another
            pixel scale, or the PSF is too narrow (see `choose_oversampling`).
    """
    if (
        isinstance(psf, ImagePSF)
        and psf.includes_pixel
        and not math.isclose(psf.scale_arcsec, pixel_scale, rel_tol=1e-6)
    ):
        raise ValueError(
            f"psf: an effective PSF (includes_pixel=True) must have the stamp's pixel scale "
            f"{pixel_scale} arcsec; got {psf.scale_arcsec} arcsec"
        )
    k_factor = choose_oversampling(psf, pixel_scale, tolerance)
    height, width = shape
    box = (_good_fft_size(math.ceil(padding * height)), _good_fft_size(math.ceil(padding * width)))
    sampling = 2 * math.pi / pixel_scale  # the spacing of aliases
    # Full axis: the fine frequencies in FFT order; index a * box + u is alias a of u.
    ky = 2 * math.pi * np.fft.fftfreq(k_factor * box[0], d=pixel_scale / k_factor)
    # Half axis: alias b of each non-negative frequency, b = -(K // 2) ... K - 1 - K // 2.
    half = 2 * math.pi * np.fft.rfftfreq(box[1], d=pixel_scale)
    aliases = np.arange(k_factor) - k_factor // 2
    kx = (half[None, :] + sampling * aliases[:, None]).reshape(-1)

    transfer = psf.transfer(kx[None, :], ky[:, None])
    if not psf.includes_pixel:
        transfer = transfer * _pixel_response(kx, pixel_scale)[None, :]
        transfer = transfer * _pixel_response(ky, pixel_scale)[:, None]
    # Pixel i is (i - (size - 1)/2) pixels from the profile centre. Put the centre at
    # +f pixels, f the fractional part of (size - 1)/2, so that every pixel centre
    # falls on a whole pixel of the box; then roll the stamp to the start of the box.
    roll = []
    for axis, size in enumerate(shape):
        whole = math.floor((size - 1) / 2)
        fraction = (size - 1) / 2 - whole
        k = kx[None, :] if axis == 1 else ky[:, None]
        transfer = transfer * np.exp(-1j * k * fraction * pixel_scale)
        roll.append(whole)
    rings = range(-wrap_rings, wrap_rings + 1)
    replicas = np.array(
        [(a * box[1], c * box[0]) for c in rings for a in rings if (a, c) != (0, 0)],
        dtype=np.float64,
    ).reshape(-1, 2)
    return FourierLayout(
        shape=(int(height), int(width)),
        pixel_scale=float(pixel_scale),
        oversampling=k_factor,
        padded_shape=box,
        kx=kx.astype(np.float32),
        ky=ky.astype(np.float32),
        transfer=transfer.astype(np.complex64),
        roll=(int(roll[0]), int(roll[1])),
        x=((np.arange(width) - (width - 1) / 2) * pixel_scale).astype(np.float32),
        y=((np.arange(height) - (height - 1) / 2) * pixel_scale).astype(np.float32),
        replicas=(replicas * pixel_scale).astype(np.float32),
    )


def render_one(
    layout: FourierLayout, table: SersicTable, theta: Float[Array, " 7"]
) -> Float[Array, "height width"]:
    """Noiseless image of one galaxy, in counts per pixel.

    Args:
        layout: the task's Fourier grid.
        table: the Sérsic Fourier table.
        theta: ``(flux [counts], half-light radius [arcsec], n, g1, g2, x0 [arcsec],
            y0 [arcsec])``.

    Returns:
        The image, ``layout.shape``.
    """
    flux, radius, n, g1, g2, x0, y0 = (theta[i] for i in range(7))
    kx = jnp.asarray(layout.kx)[None, :]
    ky = jnp.asarray(layout.ky)[:, None]
    # κ² = r_e² |S k|², a quadratic form in (kx, ky).
    inverse = 1.0 / (1.0 - (g1 * g1 + g2 * g2))
    q_xx = ((1.0 + g1) ** 2 + g2 * g2) * inverse
    q_xy = 4.0 * g2 * inverse
    q_yy = ((1.0 - g1) ** 2 + g2 * g2) * inverse
    kappa_sq = (radius * radius) * (q_xx * kx * kx + q_xy * kx * ky + q_yy * ky * ky)
    profile = fourier_profile(table, profile_row(table, n), kappa_sq)
    shift = jnp.exp(-1j * (ky * y0)) * jnp.exp(-1j * (kx * x0))
    spectrum = (flux * profile) * (jnp.asarray(layout.transfer) * shift)
    # Sum the K x K aliases (contiguous blocks; slices fuse better than a reshaped sum).
    k_factor = layout.oversampling
    box_y, box_x = layout.padded_shape
    half = box_x // 2 + 1
    rows = sum(spectrum[i * box_y : (i + 1) * box_y] for i in range(k_factor))
    folded = sum(rows[:, j * half : (j + 1) * half] for j in range(k_factor))
    image = jnp.fft.irfft2(folded, s=layout.padded_shape)
    image = jnp.roll(image, layout.roll, axis=(0, 1))
    height, width = layout.shape
    image = image[:height, :width]
    if len(layout.replicas):
        image = image - _periodic_copies(layout, table, theta)
    return image


def _periodic_copies(
    layout: FourierLayout, table: SersicTable, theta: Float[Array, " 7"]
) -> Float[Array, "height width"]:
    """The unconvolved profile's periodic copies at the pixel centres, counts per pixel."""
    flux, radius, n, g1, g2, x0, y0 = (theta[i] for i in range(7))
    b_n, log_norm = real_space_constants(table, n)
    offsets = jnp.asarray(layout.replicas)
    dx = jnp.asarray(layout.x)[None, None, :] - x0 - offsets[:, 0, None, None]
    dy = jnp.asarray(layout.y)[None, :, None] - y0 - offsets[:, 1, None, None]
    # r² = |S⁻¹ d|² / r_e², the elliptical radius in units of the half-light radius.
    inverse = 1.0 / ((1.0 - (g1 * g1 + g2 * g2)) * radius * radius)
    r_sq = (
        ((1.0 - g1) ** 2 + g2 * g2) * dx * dx
        - 4.0 * g2 * dx * dy
        + ((1.0 + g1) ** 2 + g2 * g2) * dy * dy
    ) * inverse
    profile = jnp.exp(log_norm - b_n * jnp.exp(jnp.log(r_sq) / (2.0 * n)))
    pixel_area = layout.pixel_scale**2
    return (flux * pixel_area / (radius * radius)) * jnp.sum(profile, axis=0)
