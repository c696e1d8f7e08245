"""FITS images and cutouts, read into astroprob's image convention.

The convention (the one `astroprob.tasks.SersicGalaxy` simulates): an image is
a float32 array ``(height, width)``; row ``i`` is ``y``, column ``j`` is ``x``;
``x`` is the first FITS axis (``NAXIS1``) and ``y`` the second, so the array
astropy reads is used as it is, with no flip or transpose. Displayed with
``imshow(image, origin="lower")``, ``+x`` points right and ``+y`` up, and a
position angle runs counter-clockwise from ``+x``. The centre of a stamp is
the centre of the array, ``((width - 1)/2, (height - 1)/2)`` in ``(x, y)``
pixels. Orientation on the sky (north, east) is not used: parameters are in the
pixel frame.

`read_fits_image` reads one image HDU, with its celestial WCS when the header
has one; `sky_stamps` cuts stamps centred on sky positions with astropy's
`~astropy.nddata.Cutout2D` and checks that the image's pixel scale is the one
a network was trained at. `read_real_galaxy_catalog` reads a
GalSim "real galaxy" catalogue (the format of the COSMOS and AEGIS samples:
columns ``IDENT``, ``GAL_FILENAME``, ``GAL_HDU``, ``PSF_FILENAME``,
``PSF_HDU``, ``PIXEL_SCALE``, ``NOISE_VARIANCE``, optionally ``MAG`` and
``BAND``) with its galaxy and PSF stamps. `cutout` cuts a stamp of a given
shape around a pixel.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.nddata.utils import NoOverlapError, PartialOverlapError
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

__all__ = [
    "Cutout",
    "FitsImage",
    "GalaxyStamp",
    "SkyStamps",
    "cutout",
    "image_pixel_scale",
    "read_fits_image",
    "read_real_galaxy_catalog",
    "sky_stamps",
]

_CATALOG_COLUMNS = (
    "IDENT",
    "GAL_FILENAME",
    "GAL_HDU",
    "PSF_FILENAME",
    "PSF_HDU",
    "PIXEL_SCALE",
    "NOISE_VARIANCE",
)


@dataclass(frozen=True, eq=False)
class FitsImage:
    """One image HDU.

    Attributes:
        data: the pixels, ``(height, width)`` float32 (read-only).
        header: the HDU's FITS header.
        path: the file.
        hdu: the HDU index.
        wcs: the celestial WCS of the header, or ``None`` if it has none.
    """

    data: np.ndarray
    header: fits.Header
    path: Path
    hdu: int
    wcs: WCS | None = None


@dataclass(frozen=True, eq=False)
class GalaxyStamp:
    """A real galaxy: its image, its PSF and its noise, from a real-galaxy catalogue.

    Attributes:
        ident: catalogue identifier.
        image: galaxy stamp ``(height, width)`` float32, in the catalogue's flux units.
        psf: PSF image ``(height, width)`` float32 at the same pixel scale.
        pixel_scale: pixel side (arcsec).
        noise_variance: variance of the pixel noise, in flux units squared.
        magnitude: ``MAG`` if the catalogue has it, else ``None``.
        band: ``BAND`` if the catalogue has it, else ``None``.
    """

    ident: int
    image: np.ndarray
    psf: np.ndarray
    pixel_scale: u.Quantity
    noise_variance: float
    magnitude: float | None
    band: str | None


class Cutout(NamedTuple):
    """A stamp cut from a larger image.

    Attributes:
        data: the stamp ``(height, width)``.
        offset: ``(dy, dx)`` in pixels of the requested centre from the stamp's
            centre ``((height - 1)/2, (width - 1)/2)``; 0 or ±0.5.
    """

    data: np.ndarray
    offset: tuple[float, float]


def _open(path: Path) -> fits.HDUList:
    """Open and fully read a FITS file; a truncated or malformed one raises ValueError."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    hdul = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
            hdul.verify("exception")
            for unit in hdul:
                _ = unit.data  # read every HDU now, so that a short file shows
    except (OSError, ValueError, TypeError, fits.VerifyError) as err:
        if hdul is not None:
            hdul.close()
        raise ValueError(f"{path}: not a readable FITS file ({err})") from err
    # astropy only warns about a truncated file; here that is an error.
    for record in caught:
        if "truncated" in str(record.message):
            hdul.close()
            raise ValueError(f"{path}: not a readable FITS file ({record.message})")
    for record in caught:
        warnings.warn(record.message, record.category, stacklevel=3)
    return hdul


def read_fits_image(path: str | Path, hdu: int = 0) -> FitsImage:
    """Read one 2-D image HDU.

    Args:
        path: the FITS file.
        hdu: index of the HDU (0 is the primary HDU).

    Returns:
        A `FitsImage`; ``data`` is float32 ``(height, width)``.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not FITS, ``hdu`` is out of range, or the HDU holds
            no 2-D image or has NaN or inf pixels.
    """
    path = Path(path)
    if isinstance(hdu, bool) or not isinstance(hdu, int | np.integer):
        raise ValueError(f"hdu: expected an integer HDU index; got {hdu!r}")
    with _open(path) as hdul:
        if not 0 <= hdu < len(hdul):
            raise ValueError(f"hdu: expected 0 to {len(hdul) - 1} for {path}; got {hdu}")
        unit = hdul[hdu]
        data = unit.data if isinstance(unit, fits.PrimaryHDU | fits.ImageHDU) else None
        if data is None or data.ndim != 2:
            shape = None if data is None else data.shape
            raise ValueError(
                f"{path}: expected a 2-D image in HDU {hdu}; got {type(unit).__name__} "
                f"with data shape {shape}"
            )
        array = np.array(data, dtype=np.float32)
        header = unit.header.copy()
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(
            f"{path}: HDU {hdu} has {int(bad.sum())} NaN or inf pixels; expected finite values "
            "(fill or mask them before use)"
        )
    array.setflags(write=False)
    return FitsImage(data=array, header=header, path=path, hdu=int(hdu), wcs=_celestial_wcs(header))


def _celestial_wcs(header: fits.Header) -> WCS | None:
    """The header's celestial WCS, or None; a malformed WCS raises ValueError."""
    if not any(key.startswith("CTYPE") for key in header):
        return None
    try:
        with warnings.catch_warnings():
            # Harmless header fix-ups (e.g. 'RADECSYS' renamed) are not the user's problem.
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=2)
    except (ValueError, KeyError, MemoryError) as err:
        raise ValueError(f"header: expected a valid celestial WCS; got an error: {err}") from err
    return wcs if wcs.has_celestial else None


class SkyStamps(NamedTuple):
    """Stamps cut around sky positions, in the image convention of `SersicGalaxy`.

    Attributes:
        data: the stamps ``(n, height, width)`` float32.
        x, y: pixel position ``(n,)`` of each requested sky position in the image
            (0-based, ``x`` along ``NAXIS1``).
        offset_x, offset_y: ``(n,)`` pixels from the stamp centre
            ``((width - 1)/2, (height - 1)/2)`` to the requested position; within
            ±0.5 (a stamp starts on a whole pixel).
    """

    data: np.ndarray
    x: np.ndarray
    y: np.ndarray
    offset_x: np.ndarray
    offset_y: np.ndarray


def image_pixel_scale(image: FitsImage) -> u.Quantity:
    """Pixel side of ``image`` from its WCS (the mean of the two axes).

    Raises:
        ValueError: if the image has no celestial WCS or its pixels are not square
            (axes differing by more than 1 %).
    """
    if image.wcs is None:
        raise ValueError(
            f"{image.path}: expected a celestial WCS (CTYPE1/2, CRVAL, CDELT or CD) in HDU "
            f"{image.hdu}; found none"
        )
    scales = proj_plane_pixel_scales(image.wcs.celestial) * 3600.0  # deg -> arcsec
    if abs(scales[0] - scales[1]) > 0.01 * max(scales):
        raise ValueError(
            f"{image.path}: expected square pixels; the WCS gives {scales[0]:.4g} x "
            f"{scales[1]:.4g} arcsec"
        )
    return float(np.mean(scales)) * u.arcsec


def sky_stamps(
    image: FitsImage,
    positions: SkyCoord,
    shape: tuple[int, int],
    *,
    pixel_scale: u.Quantity | None = None,
    rtol: float = 0.01,
) -> SkyStamps:
    """Cut ``shape`` stamps centred on sky ``positions`` with `~astropy.nddata.Cutout2D`.

    Args:
        image: an image with a celestial WCS (`read_fits_image`).
        positions: sky coordinates, scalar or ``(n,)``.
        shape: ``(height, width)`` of each stamp in pixels.
        pixel_scale: if given, the pixel side the stamps must have (e.g. the one a
            network was trained at); the image's WCS must agree within ``rtol``.
        rtol: relative tolerance of the pixel-scale check.

    Returns:
        The stamps and where they lie, as `SkyStamps`.

    Raises:
        ValueError: if the image has no WCS, its pixel scale disagrees with
            ``pixel_scale``, or a stamp does not lie wholly inside the image (the
            message gives the position's index and coordinates).
    """
    if not isinstance(positions, SkyCoord):
        raise TypeError(f"positions: expected an astropy SkyCoord; got {type(positions).__name__}")
    scale = image_pixel_scale(image)
    if pixel_scale is not None:
        wanted = pixel_scale.to_value(u.arcsec)
        if abs(scale.to_value(u.arcsec) - wanted) > rtol * wanted:
            raise ValueError(
                f"{image.path}: expected a pixel scale of {wanted:.4g} arcsec (the training "
                f"images'); the WCS gives {scale.to_value(u.arcsec):.4g} arcsec"
            )
    height, width = int(shape[0]), int(shape[1])
    coords = positions.reshape(-1) if positions.ndim else positions.reshape(1)
    stamps, xs, ys, dxs, dys = [], [], [], [], []
    for i, coord in enumerate(coords):
        where = coord.icrs.to_string("decimal", precision=6)
        try:
            if not np.all(np.isfinite(image.wcs.world_to_pixel(coord))):
                # The far side of the sky has no place on a tangent-plane projection.
                raise NoOverlapError(f"{where} does not project onto the image")
            cut = Cutout2D(image.data, coord, (height, width), wcs=image.wcs, mode="strict")
        except (NoOverlapError, PartialOverlapError) as err:
            raise ValueError(
                f"{image.path}: position {i} (ra dec = {where} deg) needs a {height}x{width} "
                f"stamp wholly inside the {image.data.shape[1]}x{image.data.shape[0]} image; "
                f"it lies {'outside' if isinstance(err, NoOverlapError) else 'too near the edge'}"
            ) from err
        x, y = cut.input_position_original
        cx, cy = cut.input_position_cutout
        stamps.append(np.array(cut.data, dtype=np.float32))
        xs.append(x)
        ys.append(y)
        dxs.append(cx - (width - 1) / 2)
        dys.append(cy - (height - 1) / 2)
    return SkyStamps(
        data=np.stack(stamps),
        x=np.asarray(xs),
        y=np.asarray(ys),
        offset_x=np.asarray(dxs),
        offset_y=np.asarray(dys),
    )


def read_real_galaxy_catalog(
    path: str | Path, *, image_dir: str | Path | None = None
) -> list[GalaxyStamp]:
    """Read a GalSim real-galaxy catalogue and every galaxy and PSF stamp it points to.

    Args:
        path: the catalogue (a FITS table).
        image_dir: folder of the image files; default the catalogue's folder.

    Returns:
        One `GalaxyStamp` per row, in catalogue order.

    Raises:
        FileNotFoundError: if the catalogue or an image file is missing.
        ValueError: if the table lacks a required column or a stamp is bad.
    """
    path = Path(path)
    with _open(path) as hdul:
        tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
        if not tables:
            raise ValueError(f"{path}: expected a FITS binary table; found none")
        table = Table(tables[0].data)
    missing = [c for c in _CATALOG_COLUMNS if c not in table.colnames]
    if missing:
        raise ValueError(
            f"{path}: expected a real-galaxy catalogue with columns {list(_CATALOG_COLUMNS)}; "
            f"missing {missing}"
        )
    folder = path.parent if image_dir is None else Path(image_dir)
    stamps = []
    for row in table:
        image = read_fits_image(folder / _text(row["GAL_FILENAME"]), int(row["GAL_HDU"]))
        psf = read_fits_image(folder / _text(row["PSF_FILENAME"]), int(row["PSF_HDU"]))
        scale = float(row["PIXEL_SCALE"])
        variance = float(row["NOISE_VARIANCE"])
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(
                f"{path}: PIXEL_SCALE of IDENT {row['IDENT']} is {scale}; expected > 0"
            )
        if not (math.isfinite(variance) and variance >= 0):
            raise ValueError(
                f"{path}: NOISE_VARIANCE of IDENT {row['IDENT']} is {variance}; expected >= 0"
            )
        stamps.append(
            GalaxyStamp(
                ident=int(row["IDENT"]),
                image=image.data,
                psf=psf.data,
                # Catalogues store 0.03 as float32 (0.029999999); keep 7 significant digits.
                pixel_scale=float(f"{scale:.7g}") * u.arcsec,
                noise_variance=variance,
                magnitude=float(row["MAG"]) if "MAG" in table.colnames else None,
                band=_text(row["BAND"]) if "BAND" in table.colnames else None,
            )
        )
    return stamps


def cutout(image: Any, shape: tuple[int, int], center: tuple[int, int] | None = None) -> Cutout:
    """Cut a ``shape`` stamp from ``image`` around pixel ``center`` (row, column).

    Args:
        image: 2-D array ``(height, width)``.
        shape: ``(height, width)`` of the stamp.
        center: ``(row, column)`` of the pixel to centre on; default the pixel
            nearest the image centre.

    Returns:
        A `Cutout`: the stamp (a copy) and the offset of ``center`` from its centre.

    Raises:
        ValueError: if ``image`` is not 2-D or the stamp does not fit inside it.
    """
    array = np.asarray(image)
    if array.ndim != 2:
        raise ValueError(f"image: expected a 2-D array; got shape {array.shape}")
    if (
        len(shape) != 2
        or not all(isinstance(s, int | np.integer) and s > 0 for s in shape)
        or shape[0] > array.shape[0]
        or shape[1] > array.shape[1]
    ):
        raise ValueError(
            f"shape: expected two positive integers no larger than the image {array.shape}; "
            f"got {shape!r}"
        )
    if center is None:
        center = ((array.shape[0] - 1) // 2, (array.shape[1] - 1) // 2)
    starts, offsets = [], []
    for axis in range(2):
        size, full, c = int(shape[axis]), array.shape[axis], int(center[axis])
        start = c - (size - 1) // 2
        if start < 0 or start + size > full:
            raise ValueError(
                f"center: a {shape} stamp around {tuple(center)} leaves the image {array.shape}"
            )
        starts.append(start)
        offsets.append(float(c - start - (size - 1) / 2))
    data = array[starts[0] : starts[0] + shape[0], starts[1] : starts[1] + shape[1]].copy()
    return Cutout(data=data, offset=(offsets[0], offsets[1]))


def _text(value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        value = value.decode("ascii")
    return str(value).strip()
