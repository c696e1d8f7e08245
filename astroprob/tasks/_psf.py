"""Point-spread functions for `SersicGalaxy`, described by their Fourier transforms.

A PSF is fixed for a task, so its transform is evaluated once, in float64
numpy, on the task's Fourier grid; only the galaxy is computed per image in JAX.
Every transform is normalised to 1 at ``k = 0`` (unit flux). Wavenumbers are
in radians per arcsec.

* `GaussianPSF`: ``exp(-k² σ² / 2)`` with ``σ = FWHM / (2 sqrt(2 ln 2))``.
* `MoffatPSF`: ``I(r) ∝ (1 + (r/α)²)^(-β)`` (untruncated, ``β > 1``), whose
  transform is ``(kα)^(β-1) K_(β-1)(kα) / (2^(β-2) Γ(β-1))``.
* `ImagePSF`: a sampled image, read as the band-limited (sinc-interpolated)
  profile through its samples: the discrete-time Fourier transform of the
  pixels for ``|k_x|, |k_y| < π / scale``, zero beyond. The profile's centre is
  the centre of the array (between pixels for an even size).

References:
    Moffat (1969), A&A 3, 455.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from astroprob.io.units import angle_to_arcsec

__all__ = ["PSF", "GaussianPSF", "ImagePSF", "MoffatPSF"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


class PSF:
    """Base class: a fixed PSF known through its Fourier transform."""

    includes_pixel: bool = False
    """Whether the PSF already contains the detector pixel (an effective PSF)."""

    def transfer(self, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
        """Fourier transform at ``(kx, ky)`` (rad/arcsec, broadcastable), 1 at the origin."""
        raise NotImplementedError

    @property
    def band_limit(self) -> float | None:
        """Wavenumber (rad/arcsec) beyond which the transform is exactly zero, if any."""
        return None


@dataclass(frozen=True)
class GaussianPSF(PSF):
    """A circular Gaussian PSF.

    Args:
        fwhm: full width at half maximum, an angle (e.g. ``0.2 * u.arcsec``).

    Raises:
        TypeError, ValueError: if ``fwhm`` is not a positive angle Quantity.
    """

    fwhm: Any
    sigma_arcsec: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        fwhm = angle_to_arcsec(self.fwhm, "fwhm")
        object.__setattr__(self, "sigma_arcsec", fwhm * _FWHM_TO_SIGMA)

    def transfer(self, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:  # noqa: D102
        k_sq = np.asarray(kx, np.float64) ** 2 + np.asarray(ky, np.float64) ** 2
        return np.exp(-0.5 * k_sq * self.sigma_arcsec**2).astype(np.complex128)


@dataclass(frozen=True)
class MoffatPSF(PSF):
    """A circular, untruncated Moffat PSF ``(1 + (r/α)²)^(-β)``.

    Args:
        fwhm: full width at half maximum, an angle.
        beta: the power ``β``, greater than 1 (finite flux); 2.5 to 4.8 is typical
            of ground-based seeing.

    Raises:
        TypeError, ValueError: if ``fwhm`` is not a positive angle or ``beta <= 1``.
    """

    fwhm: Any
    beta: Any = 3.0
    alpha_arcsec: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        fwhm = angle_to_arcsec(self.fwhm, "fwhm")
        beta = self.beta
        if (
            isinstance(beta, bool)
            or not isinstance(beta, int | float | np.floating | np.integer)
            or not math.isfinite(beta)
            or beta <= 1
        ):
            raise ValueError(f"beta: expected a finite number > 1; got {beta!r}")
        object.__setattr__(self, "beta", float(beta))
        alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
        object.__setattr__(self, "alpha_arcsec", alpha)

    def transfer(self, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:  # noqa: D102
        z = np.hypot(np.asarray(kx, np.float64), np.asarray(ky, np.float64)) * self.alpha_arcsec
        nu = self.beta - 1.0
        safe = np.where(z > 0, z, 1.0)
        # z^nu K_nu(z) with the exponentially scaled Bessel function, in logs for large z.
        log_value = nu * np.log(safe) + np.log(special.kve(nu, safe)) - safe
        log_norm = (nu - 1.0) * math.log(2.0) + special.gammaln(nu)
        value = np.where(z > 0, np.exp(log_value - log_norm), 1.0)
        return value.astype(np.complex128)


@dataclass(frozen=True, eq=False)
class ImagePSF(PSF):
    """A PSF given as an image, e.g. an HST PSF model or a stacked star.

    The image is normalised to unit sum and read as a band-limited profile
    (sinc interpolation between the samples), centred on the centre of the array.

    Args:
        image: 2-D array ``(height, width)``, row ``i`` at ``y = i``, column ``j``
            at ``x = j`` (the convention of `astroprob.io.read_fits_image`).
        pixel_scale: pixel side of ``image`` (e.g. ``0.03 * u.arcsec``).
        includes_pixel: set if the image is an effective PSF that already
            contains the detector pixel; then no pixel response is added when
            rendering, and ``pixel_scale`` must equal the task's pixel scale.

    Raises:
        TypeError, ValueError: if ``image`` is not a finite 2-D array (at least
            3 pixels a side) with a positive sum, or ``pixel_scale`` is not a
            positive angle.
    """

    image: Any
    pixel_scale: Any
    includes_pixel: bool = field(default=False, kw_only=True)
    scale_arcsec: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        image = _check_psf_image(self.image)
        object.__setattr__(self, "image", image)
        scale = angle_to_arcsec(self.pixel_scale, "pixel_scale", per_pixel=True)
        object.__setattr__(self, "scale_arcsec", scale)
        if not isinstance(self.includes_pixel, bool):
            raise TypeError(f"includes_pixel: expected a bool; got {self.includes_pixel!r}")

    @property
    def band_limit(self) -> float:  # noqa: D102
        return math.pi / self.scale_arcsec

    def transfer(self, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:  # noqa: D102
        kx = np.asarray(kx, np.float64)
        ky = np.asarray(ky, np.float64)
        height, width = self.image.shape
        x = (np.arange(width) - (width - 1) / 2.0) * self.scale_arcsec
        y = (np.arange(height) - (height - 1) / 2.0) * self.scale_arcsec
        if kx.ndim == 1 and ky.ndim == 1:
            # Separable: (ny, h) @ (h, w) @ (w, nx), the outer-product grid ky[:, None], kx[None].
            out = np.exp(-1j * np.outer(ky, y)) @ self.image @ np.exp(-1j * np.outer(x, kx))
            return out * _box(ky, self.scale_arcsec)[:, None] * _box(kx, self.scale_arcsec)[None]
        kx, ky = np.broadcast_arrays(kx, ky)
        phase_x = np.exp(-1j * kx[..., None] * x)  # (..., w)
        phase_y = np.exp(-1j * ky[..., None] * y)  # (..., h)
        out = np.einsum("...i,ij,...j->...", phase_y, self.image, phase_x)
        return out * _box(kx, self.scale_arcsec) * _box(ky, self.scale_arcsec)


def _box(k: np.ndarray, scale: float) -> np.ndarray:
    """Transform of the sinc interpolant: 1 inside the Nyquist band, 1/2 on its edge."""
    ratio = np.abs(k) * scale / math.pi
    return np.where(ratio < 1 - 1e-9, 1.0, np.where(ratio <= 1 + 1e-9, 0.5, 0.0))


def _check_psf_image(image: Any) -> np.ndarray:
    try:
        array = np.array(image, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"image: expected a 2-D array of numbers; got {type(image).__name__}"
        ) from err
    if array.ndim != 2 or min(array.shape) < 3:
        raise ValueError(f"image: expected a 2-D array at least 3x3; got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"image: expected finite values; {bad} pixels are NaN or inf")
    total = array.sum()
    if not total > 0:
        raise ValueError(f"image: expected a positive sum (a PSF with flux); got {total}")
    array = array / total
    array.setflags(write=False)
    return array
