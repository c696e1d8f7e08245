"""Strip astropy units at the edge: check a Quantity, convert it, return a plain float.

The JAX core of astroprob works on unitless floats; these helpers are where a
user's Quantity is checked for the right physical type and a finite, in-range
value, with an error that names the argument.

Examples:
    >>> import astropy.units as u
    >>> from astroprob.io.units import angle_to_arcsec, magnitude_to_counts
    >>> angle_to_arcsec(0.2 * u.arcsec / u.pix, "pixel_scale", per_pixel=True)
    0.2
    >>> round(magnitude_to_counts(25.0 * u.mag, 30.0 * u.mag), 6)
    100.0
"""

from __future__ import annotations

import math
from typing import Any

import astropy.units as u

__all__ = [
    "angle_to_arcsec",
    "magnitude_to_counts",
    "quantity_to_float",
    "sky_counts_per_pixel",
]


def _describe(value: Any) -> str:
    if isinstance(value, u.Quantity):
        return f"{value!s}"
    return f"{type(value).__name__} {value!r}"


def quantity_to_float(
    value: Any,
    unit: u.UnitBase,
    name: str,
    *,
    example: str,
    positive: bool = False,
    nonnegative: bool = False,
) -> float:
    """Convert a scalar Quantity to a float in ``unit``.

    Args:
        value: an astropy Quantity (scalar).
        unit: the unit to convert to.
        name: argument name for error messages.
        example: a valid value for error messages, e.g. ``"0.1 * u.arcsec"``.
        positive: require ``> 0``.
        nonnegative: require ``>= 0``.

    Returns:
        The value in ``unit``, a Python float.

    Raises:
        TypeError: if ``value`` is not an astropy Quantity.
        ValueError: if it is not a scalar, has units not convertible to
            ``unit``, is not finite, or is out of range.
    """
    if not isinstance(value, u.Quantity):
        raise TypeError(
            f"{name}: expected an astropy Quantity in {unit} (e.g. {example}); "
            f"got {_describe(value)}"
        )
    if value.ndim != 0:
        raise ValueError(f"{name}: expected a scalar Quantity; got shape {value.shape}")
    try:
        out = float(value.to_value(unit))
    except u.UnitConversionError as err:
        raise ValueError(
            f"{name}: expected units convertible to {unit} (e.g. {example}); got {value.unit}"
        ) from err
    if not math.isfinite(out):
        raise ValueError(f"{name}: expected a finite value; got {value}")
    if positive and not out > 0:
        raise ValueError(f"{name}: expected a positive value; got {value}")
    if nonnegative and not out >= 0:
        raise ValueError(f"{name}: expected a value >= 0; got {value}")
    return out


def angle_to_arcsec(value: Any, name: str, *, per_pixel: bool = False) -> float:
    """A positive angle in arcsec; with ``per_pixel`` also accepts ``arcsec / pix``.

    Raises:
        TypeError: if ``value`` is not a Quantity.
        ValueError: if it is not a positive finite angle.
    """
    if per_pixel and isinstance(value, u.Quantity) and value.unit.is_equivalent(u.arcsec / u.pix):
        value = value * u.pix
    example = "0.1 * u.arcsec / u.pix" if per_pixel else "0.2 * u.arcsec"
    return quantity_to_float(value, u.arcsec, name, example=example, positive=True)


def magnitude_to_counts(magnitude: Any, zero_point: Any, name: str = "magnitude") -> float:
    """Counts of a source of ``magnitude`` given the ``zero_point`` (the magnitude of 1 count).

    ``counts = 10^(-0.4 (magnitude - zero_point))``.

    Raises:
        TypeError, ValueError: if either is not a finite Quantity in ``u.mag``.
    """
    mag = quantity_to_float(magnitude, u.mag, name, example="22 * u.mag")
    zp = quantity_to_float(zero_point, u.mag, "zero_point", example="30 * u.mag")
    return 10.0 ** (-0.4 * (mag - zp))


def sky_counts_per_pixel(
    sky_level: Any, pixel_scale_arcsec: float, zero_point: Any, name: str = "sky_level"
) -> float:
    """Sky background in counts per pixel.

    Args:
        sky_level: counts per pixel (``u.ct`` or ``u.ct / u.pix``), counts per area
            (``u.ct / u.arcsec**2``), or a surface brightness (``u.mag / u.arcsec**2``, on
            the ``zero_point`` system).
        pixel_scale_arcsec: pixel side in arcsec.
        zero_point: magnitude of a source giving one count (``u.mag``).
        name: argument name for error messages.

    Raises:
        TypeError: if ``sky_level`` is not a Quantity.
        ValueError: for other units, or a negative or non-finite level.
    """
    example = "21.5 * u.mag / u.arcsec**2, 25 * u.ct or 2500 * u.ct / u.arcsec**2"
    if not isinstance(sky_level, u.Quantity):
        raise TypeError(
            f"{name}: expected an astropy Quantity (e.g. {example}); got {_describe(sky_level)}"
        )
    area = pixel_scale_arcsec**2
    if sky_level.unit.is_equivalent(u.ct / u.pix):
        sky_level = sky_level * u.pix
    if sky_level.unit.is_equivalent(u.mag / u.arcsec**2):
        sb = quantity_to_float(sky_level, u.mag / u.arcsec**2, name, example=example)
        return magnitude_to_counts(sb * u.mag, zero_point) * area
    if sky_level.unit.is_equivalent(u.ct / u.arcsec**2):
        per_area = quantity_to_float(
            sky_level, u.ct / u.arcsec**2, name, example=example, nonnegative=True
        )
        return per_area * area
    if sky_level.unit.is_equivalent(u.ct):
        return quantity_to_float(sky_level, u.ct, name, example=example, nonnegative=True)
    raise ValueError(
        f"{name}: expected counts per pixel, counts per arcsec² or mag per arcsec² "
        f"(e.g. {example}); got {sky_level.unit}"
    )
