"""Real supernova light curves: SNANA FITS and text files as padded, masked arrays.

All readers return `LightCurves`: for ``n`` objects and ``n_bands`` bands, arrays
``(n, n_bands, max_points)`` of times (MJD, days), fluxes and flux errors in
SNANA's FLUXCAL unit (zero point 27.5: ``mag = 27.5 - 2.5 log10(FLUXCAL)``) and a
boolean mask; in each ``[object, band]`` row the observations come first, in
time order, and the padded entries are zero. `LightCurves.to_observation`
turns them into the observation layout of
`astroprob.tasks.supernova.SupernovaLightCurves`.

Formats (SNANA, Kessler et al. 2009, https://arxiv.org/abs/0908.4280):

- FITS: a HEAD table (one row per object; ``PTROBS_MIN``/``PTROBS_MAX`` give the
  1-based, inclusive row range in the PHOT table) and a PHOT table (``MJD``,
  ``BAND``, ``FLUXCAL``, ``FLUXCALERR``; rows with ``MJD = -777`` separate objects).
- Text: ``KEY: value`` header lines (``SNID``, ``REDSHIFT_FINAL``, ``NOBS``,
  ``VARLIST``, ...) followed by ``OBS:`` rows with the columns named in ``VARLIST``.
- Key/value tables (FITRES and similar): a ``VARNAMES:`` line and ``SN:`` rows.

Nothing is clipped: a light curve with more points in a band than
``max_points`` raises, as do non-finite values, non-positive errors, and
inconsistent pointers or counts; each message names the file and the object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table
from jax.typing import ArrayLike

__all__ = [
    "FLUXCAL_ZERO_POINT",
    "LightCurves",
    "lightcurves_from_table",
    "read_ps1mds_metadata",
    "read_snana_fits",
    "read_snana_table",
    "read_snana_text",
]

FLUXCAL_ZERO_POINT = 27.5
"""SNANA's FLUXCAL zero point: ``mag = 27.5 - 2.5 log10(FLUXCAL)``."""
SEPARATOR_MJD = -777.0
"""MJD of the rows that separate objects in SNANA PHOT tables."""

_IGNORE_TOLERANCE = 0.01
"""Days: an IGNORE entry removes the nearest observation in its band within this distance."""
# Effective wavelengths (Angstrom), used only to order single-letter bands blue to red.
_BAND_ORDER = {b: i for i, b in enumerate("uUBgVrRiIzyYJHK")}


@dataclass(frozen=True, eq=False)
class LightCurves:
    """A batch of multi-band light curves as fixed-shape padded arrays.

    Attributes:
        ids: object names, length ``n``.
        bands: band names, the second axis of the arrays.
        time: MJD in days, ``(n, n_bands, max_points)``.
        flux: flux in FLUXCAL (zero point `zero_point`), same shape.
        flux_err: 1-sigma flux errors, same unit and shape; positive where observed.
        mask: True for an observation, False for padding; same shape.
        redshift: ``(n,)``, NaN where unknown.
        meta: other per-object values, each an array of length ``n`` (e.g. ``"PEAKMJD"``).
        zero_point: flux zero point in mag (27.5 for FLUXCAL).
        source: where the light curves were read from.

    Raises:
        ValueError: if the arrays disagree in shape, hold non-finite values or
            non-positive errors at observed entries, or the ids repeat.
    """

    ids: tuple[str, ...]
    bands: tuple[str, ...]
    time: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    mask: np.ndarray
    redshift: np.ndarray
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    zero_point: float = FLUXCAL_ZERO_POINT
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(str(i) for i in self.ids))
        object.__setattr__(self, "bands", tuple(str(b) for b in self.bands))
        n, nb = len(self.ids), len(self.bands)
        if len(set(self.ids)) != n:
            raise ValueError("ids: expected distinct object names")
        mask = np.asarray(self.mask)
        if mask.dtype != bool or mask.ndim != 3 or mask.shape[:2] != (n, nb):
            raise ValueError(
                f"mask: expected a boolean array of shape ({n}, {nb}, max_points); "
                f"got {mask.dtype} {mask.shape}"
            )
        for name in ("time", "flux", "flux_err"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != mask.shape:
                raise ValueError(f"{name}: expected shape {mask.shape}; got {value.shape}")
            if not np.all(np.isfinite(value[mask])):
                raise ValueError(f"{name}: expected finite values at observed entries")
            object.__setattr__(self, name, np.where(mask, value, 0.0))
        if np.any(self.flux_err[mask] <= 0):
            raise ValueError("flux_err: expected positive errors at observed entries")
        object.__setattr__(self, "mask", mask)
        redshift = np.asarray(self.redshift, dtype=np.float64)
        if redshift.shape != (n,):
            raise ValueError(f"redshift: expected shape ({n},); got {redshift.shape}")
        object.__setattr__(self, "redshift", redshift)
        meta = {str(k): np.asarray(v) for k, v in self.meta.items()}
        for key, value in meta.items():
            if value.shape[:1] != (n,):
                raise ValueError(f"meta[{key!r}]: expected length {n}; got shape {value.shape}")
        object.__setattr__(self, "meta", meta)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (
            f"LightCurves({len(self)} objects, bands={self.bands}, "
            f"max_points={self.max_points}, source={self.source!r})"
        )

    @property
    def max_points(self) -> int:
        """Padded length of each ``[object, band]`` row."""
        return int(self.mask.shape[2])

    @property
    def num_points(self) -> np.ndarray:
        """Observations per object and band, ``(n, n_bands)``."""
        return self.mask.sum(axis=2)

    def index(self, obj_id: str) -> int:
        """Position of the object called ``obj_id``.

        Raises:
            KeyError: if there is no such object.
        """
        try:
            return self.ids.index(obj_id)
        except ValueError:
            raise KeyError(f"obj_id: no object {obj_id!r} in {self.source or 'these'}") from None

    def subset(self, which: Sequence[int] | Sequence[str] | np.ndarray) -> LightCurves:
        """The light curves at positions or with ids ``which``, in that order."""
        idx = [self.index(w) if isinstance(w, str) else int(w) for w in which]
        if any(not 0 <= i < len(self) for i in idx):
            raise ValueError(f"which: expected positions in 0..{len(self) - 1}; got {list(which)}")
        return LightCurves(
            ids=tuple(self.ids[i] for i in idx),
            bands=self.bands,
            time=self.time[idx],
            flux=self.flux[idx],
            flux_err=self.flux_err[idx],
            mask=self.mask[idx],
            redshift=self.redshift[idx],
            meta={k: v[idx] for k, v in self.meta.items()},
            zero_point=self.zero_point,
            source=self.source,
        )

    def _band_indices(self, bands: Sequence[str] | None, name: str = "bands") -> list[int]:
        if bands is None:
            return list(range(len(self.bands)))
        if isinstance(bands, str):
            bands = (bands,)
        missing = [b for b in bands if b not in self.bands]
        if missing:
            raise ValueError(f"{name}: bands {missing} are not in these light curves {self.bands}")
        return [self.bands.index(b) for b in bands]

    def brightest_time(self, bands: Sequence[str] | None = None) -> np.ndarray:
        """MJD of the highest-flux observation of each object in ``bands``, ``(n,)``.

        Raises:
            ValueError: if an object has no observation in those bands.
        """
        idx = self._band_indices(bands)
        mask = self.mask[:, idx].reshape(len(self), -1)
        empty = ~mask.any(axis=1)
        if empty.any():
            raise ValueError(
                f"bands: objects {[self.ids[i] for i in np.flatnonzero(empty)][:5]} have no "
                f"observation in {[self.bands[i] for i in idx]}"
            )
        flux = np.where(mask, self.flux[:, idx].reshape(len(self), -1), -np.inf)
        best = np.argmax(flux, axis=1)
        return self.time[:, idx].reshape(len(self), -1)[np.arange(len(self)), best]

    def to_observation(
        self,
        bands: Sequence[str],
        max_points: int,
        t_ref: ArrayLike,
        *,
        zero_point: float = FLUXCAL_ZERO_POINT,
        time_window: tuple[float, float] | None = None,
        drop_outside: bool = False,
    ) -> np.ndarray:
        """Observation array ``(n, n_bands, max_points, 4)``: ``(time - t_ref, flux, err, mask)``.

        Args:
            bands: the bands to keep, in output row order.
            max_points: padded length per band.
            t_ref: reference MJD, one number or ``(n,)``.
            zero_point: zero point of the output fluxes, mag (27.5 keeps FLUXCAL).
            time_window: ``(start, end)`` in days relative to ``t_ref``, or None.
            drop_outside: drop observations outside ``time_window``; if False,
                such observations raise.

        Raises:
            ValueError: for missing bands, a non-finite ``t_ref``, observations
                outside ``time_window`` without ``drop_outside``, more than
                ``max_points`` observations in a band, or an object left without
                observations.
        """
        idx = self._band_indices(bands)
        if isinstance(max_points, bool) or not isinstance(max_points, int | np.integer):
            raise ValueError(f"max_points: expected a positive integer; got {max_points!r}")
        if max_points < 1:
            raise ValueError(f"max_points: expected a positive integer; got {max_points}")
        n = len(self)
        t_ref = np.asarray(t_ref, dtype=np.float64)
        if t_ref.shape not in ((), (n,)) or not np.all(np.isfinite(t_ref)):
            raise ValueError(f"t_ref: expected a finite number or shape ({n},); got {t_ref!r}")
        t_ref = np.broadcast_to(t_ref, (n,))
        mask = self.mask[:, idx]
        rel = self.time[:, idx] - t_ref[:, None, None]
        if time_window is not None:
            start, end = time_window
            outside = mask & ((rel < start) | (rel > end))
            if outside.any() and not drop_outside:
                first = self.ids[int(np.argwhere(outside)[0, 0])]
                raise ValueError(
                    f"drop_outside: {int(outside.sum())} observations (first in {first!r}) lie "
                    f"outside the time window {time_window} days around t_ref; pass "
                    "drop_outside=True to drop them"
                )
            mask = mask & ~outside
        counts = mask.sum(axis=2)
        if counts.max(initial=0) > max_points:
            obj, band = np.unravel_index(np.argmax(counts), counts.shape)
            raise ValueError(
                f"max_points: expected at most {max_points} observations per band; "
                f"{self.ids[obj]!r} has {counts[obj, band]} in band {bands[band]!r}"
            )
        empty = counts.sum(axis=1) == 0
        if empty.any():
            raise ValueError(
                f"t_ref: objects {[self.ids[i] for i in np.flatnonzero(empty)][:5]} have no "
                "observation left in the selected bands and time window"
            )
        scale = 10.0 ** (0.4 * (zero_point - self.zero_point))
        channels = np.stack(
            [rel, self.flux[:, idx] * scale, self.flux_err[:, idx] * scale, mask], axis=-1
        )
        order = np.argsort(np.where(mask, rel, np.inf), axis=2, kind="stable")
        channels = np.take_along_axis(channels, order[..., None], axis=2)
        packed = np.take_along_axis(mask, order, axis=2)
        channels = np.where(packed[..., None], channels, 0.0)
        out = np.zeros((n, len(idx), max_points, 4), dtype=np.float32)
        width = min(max_points, self.max_points)
        out[:, :, :width] = channels[:, :, :width]
        return out

    def to_table(self, i: int) -> QTable:
        """Observations of object ``i`` as a QTable (``mjd`` in days, ``band``, flux, error)."""
        if not 0 <= i < len(self):
            raise ValueError(f"i: expected a position in 0..{len(self) - 1}; got {i}")
        b, p = np.nonzero(self.mask[i])
        order = np.argsort(self.time[i, b, p], kind="stable")
        table = QTable(
            {
                "mjd": self.time[i, b, p][order] * u.day,
                "band": np.asarray(self.bands)[b][order],
                "flux": self.flux[i, b, p][order],
                "flux_err": self.flux_err[i, b, p][order],
            }
        )
        table.meta.update(id=self.ids[i], zero_point=self.zero_point, redshift=self.redshift[i])
        return table


# ---------------------------------------------------------------------------- packing
def _ordered_bands(found: set[str], bands: Sequence[str] | None, source: str) -> tuple[str, ...]:
    if bands is not None:
        bands = (bands,) if isinstance(bands, str) else tuple(bands)
        missing = [b for b in bands if b not in found]
        if missing or len(set(bands)) != len(bands) or not bands:
            raise ValueError(
                f"bands: expected distinct bands present in {source}; {missing} are not "
                f"(found {sorted(found)})"
            )
        return bands
    if all(b in _BAND_ORDER for b in found):
        return tuple(sorted(found, key=_BAND_ORDER.__getitem__))
    return tuple(sorted(found))


def _pack(
    ids: list[str],
    observations: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    bands: Sequence[str] | None,
    max_points: int | None,
    source: str,
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pack per-object ``(mjd, band, flux, flux_err)`` arrays into padded arrays."""
    found = set()
    for _, band, _, _ in observations:
        found.update(np.unique(band).tolist())
    band_names = _ordered_bands(found, bands, source)
    lookup = {b: k for k, b in enumerate(band_names)}
    counts = np.zeros((len(ids), len(band_names)), dtype=int)
    for i, (_, band, _, _) in enumerate(observations):
        for k, b in enumerate(band_names):
            counts[i, k] = int(np.sum(band == b))
    needed = int(counts.max(initial=0))
    if max_points is None:
        max_points = max(needed, 1)
    elif isinstance(max_points, bool) or not isinstance(max_points, int | np.integer):
        raise ValueError(f"max_points: expected a positive integer or None; got {max_points!r}")
    elif max_points < 1:
        raise ValueError(f"max_points: expected a positive integer or None; got {max_points}")
    elif needed > max_points:
        obj, k = np.unravel_index(np.argmax(counts), counts.shape)
        raise ValueError(
            f"max_points: expected at most {max_points} observations per band; {ids[obj]!r} "
            f"in {source} has {needed} in band {band_names[k]!r}"
        )
    shape = (len(ids), len(band_names), int(max_points))
    time, flux, err = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    mask = np.zeros(shape, dtype=bool)
    for i, (mjd, band, f, e) in enumerate(observations):
        keep = np.isin(band, band_names)
        order = np.lexsort((mjd[keep], [lookup[b] for b in band[keep]]))
        rows = np.array([lookup[b] for b in band[keep]], dtype=int)[order]
        # Position of each observation within its band, after sorting by (band, time).
        starts = np.concatenate([[0], np.cumsum(counts[i])[:-1]])
        cols = np.arange(len(rows)) - starts[rows]
        time[i, rows, cols] = mjd[keep][order]
        flux[i, rows, cols] = f[keep][order]
        err[i, rows, cols] = e[keep][order]
        mask[i, rows, cols] = True
    return band_names, time, flux, err, mask


def _check_values(
    source: str, obj: str, mjd: np.ndarray, flux: np.ndarray, err: np.ndarray
) -> None:
    if np.any(mjd == SEPARATOR_MJD):
        raise ValueError(
            f"{source}: object {obj!r} contains a separator row (MJD = -777) inside its "
            "pointer range"
        )
    for name, values in (("MJD", mjd), ("FLUXCAL", flux), ("FLUXCALERR", err)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{source}: object {obj!r} has non-finite {name} values")
    if np.any(err <= 0):
        raise ValueError(f"{source}: object {obj!r} has FLUXCALERR <= 0")


def _existing(path: str | Path, name: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such file {str(path)!r}")
    return path


# ------------------------------------------------------------------------- SNANA FITS
def read_snana_fits(
    head: str | Path,
    phot: str | Path | None = None,
    *,
    bands: Sequence[str] | None = None,
    max_points: int | None = None,
    ignore: str | Path | None = None,
) -> LightCurves:
    """Read an SNANA FITS HEAD/PHOT pair.

    Args:
        head: the HEAD file (``*_HEAD.FITS`` or ``.FITS.gz``).
        phot: the PHOT file; by default ``head`` with ``_HEAD.`` replaced by ``_PHOT.``.
        bands: bands to keep, in this order; default all, blue to red for
            single-letter bands, else sorted.
        max_points: padded length per band; default the largest count.
        ignore: optional SNANA ``.IGNORE`` file; for each ``IGNORE: CID MJD BAND``
            entry the observation of that object and band nearest to MJD (within
            0.01 d; the file rounds MJD) is removed, and every entry must match one.

    Returns:
        The light curves, with ``redshift`` from ``REDSHIFT_FINAL`` and ``meta``
        holding ``PEAKMJD``, ``MWEBV``, ``SNTYPE``, ``REDSHIFT_HELIO`` where present
        and ``NUM_IGNORED`` (observations removed per object).

    Raises:
        FileNotFoundError: if a file is missing.
        ValueError: for missing columns, pointers outside the PHOT table,
            separator rows inside a light curve, non-finite values, non-positive
            errors, unmatched ignore entries, or a band with more than ``max_points``
            observations.
    """
    head = _existing(head, "head")
    if phot is None:
        if "_HEAD." not in head.name:
            raise ValueError(
                f"phot: cannot derive the PHOT file from {head.name!r} (no '_HEAD.'); pass it"
            )
        phot = head.with_name(head.name.replace("_HEAD.", "_PHOT."))
    phot = _existing(phot, "phot")
    head_table = _fits_table(head, "head", ("SNID", "PTROBS_MIN", "PTROBS_MAX"))
    phot_table = _fits_table(phot, "phot", ("MJD", "BAND", "FLUXCAL", "FLUXCALERR"))

    ids = [str(s).strip() for s in head_table["SNID"]]
    mjd = np.asarray(phot_table["MJD"], dtype=np.float64)
    band = np.char.strip(np.asarray(phot_table["BAND"]).astype(str))
    flux = np.asarray(phot_table["FLUXCAL"], dtype=np.float64)
    err = np.asarray(phot_table["FLUXCALERR"], dtype=np.float64)
    keep = np.ones(len(mjd), dtype=bool)
    ignored = np.zeros(len(ids), dtype=int)
    ptr_min = np.asarray(head_table["PTROBS_MIN"], dtype=np.int64)
    ptr_max = np.asarray(head_table["PTROBS_MAX"], dtype=np.int64)
    bad = (ptr_min < 1) | (ptr_max < ptr_min) | (ptr_max > len(mjd))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{head}: object {ids[i]!r} has PTROBS_MIN..PTROBS_MAX = {ptr_min[i]}..{ptr_max[i]}, "
            f"outside the {len(mjd)} rows of {phot.name}"
        )
    if ignore is not None:
        entries = _read_ignore(_existing(ignore, "ignore"))
        position = {obj: i for i, obj in enumerate(ids)}
        for obj, when, flt in entries:
            i = position.get(obj)
            hit = np.zeros(0, dtype=int)
            if i is not None:
                rows = np.arange(ptr_min[i] - 1, ptr_max[i])
                rows = rows[band[rows] == flt]
                distance = np.abs(mjd[rows] - when)
                hit = rows[distance == distance.min()] if rows.size else hit
                hit = hit[:1] if hit.size and distance.min() < _IGNORE_TOLERANCE else hit[:0]
            if hit.size == 0:
                raise ValueError(
                    f"ignore: entry ({obj} {when} {flt}) matches no observation in {head.name}"
                )
            ignored[i] += int(keep[hit].sum())
            keep[hit] = False

    observations = []
    for i, obj in enumerate(ids):
        rows = np.arange(ptr_min[i] - 1, ptr_max[i])
        _check_values(str(phot), obj, mjd[rows], flux[rows], err[rows])
        rows = rows[keep[rows]]
        observations.append((mjd[rows], band[rows], flux[rows], err[rows]))
    band_names, time, flux_a, err_a, mask = _pack(ids, observations, bands, max_points, head.name)

    redshift = (
        np.asarray(head_table["REDSHIFT_FINAL"], dtype=np.float64)
        if "REDSHIFT_FINAL" in head_table.colnames
        else np.full(len(ids), np.nan)
    )
    meta = {
        key: np.asarray(head_table[key])
        for key in ("PEAKMJD", "MWEBV", "SNTYPE", "REDSHIFT_HELIO")
        if key in head_table.colnames
    }
    meta["NUM_IGNORED"] = ignored
    return LightCurves(
        ids=tuple(ids),
        bands=band_names,
        time=time,
        flux=flux_a,
        flux_err=err_a,
        mask=mask,
        redshift=redshift,
        meta=meta,
        source=str(head),
    )


def _fits_table(path: Path, name: str, required: tuple[str, ...]) -> Table:
    try:
        with fits.open(path) as hdul:
            if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
                raise ValueError(f"{name}: expected a binary table in HDU 1 of {path}")
            table = Table(hdul[1].data)
    except OSError as err:
        raise ValueError(f"{name}: {path} is not a readable FITS file ({err})") from err
    missing = [c for c in required if c not in table.colnames]
    if missing:
        raise ValueError(f"{name}: {path} lacks the columns {missing}")
    return table


def _read_ignore(path: Path) -> list[tuple[str, float, str]]:
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.startswith("IGNORE:"):
            continue
        fields = line.split()
        try:
            entries.append((fields[1], float(fields[2]), fields[3]))
        except (IndexError, ValueError) as err:
            raise ValueError(
                f"ignore: {path} line {number}: expected 'IGNORE: CID MJD BAND'; got {line!r}"
            ) from err
    return entries


# ------------------------------------------------------------------------- SNANA text
def read_snana_text(
    paths: str | Path | Sequence[str | Path],
    *,
    bands: Sequence[str] | None = None,
    max_points: int | None = None,
) -> LightCurves:
    """Read SNANA text light-curve files (one object per file, e.g. ``*.snana.dat``).

    Args:
        paths: a file, a directory (all ``*.dat`` files in it, sorted), or a list of files.
        bands: bands to keep, in this order; default all, blue to red.
        max_points: padded length per band; default the largest count.

    Returns:
        The light curves, with ``redshift`` from ``REDSHIFT_FINAL`` (NaN if absent)
        and ``meta`` holding ``MWEBV`` and ``SEARCH_PEAKMJD`` (NaN if absent).

    Raises:
        FileNotFoundError: if a path does not exist.
        ValueError: if a file lacks ``SNID`` or ``VARLIST``, an ``OBS:`` row has the
            wrong number of values, ``NOBS`` disagrees with the rows, values are
            non-finite, errors are not positive, or ``max_points`` is too small.
    """
    if isinstance(paths, str | Path):
        path = Path(paths)
        if path.is_dir():
            files = sorted(path.glob("*.dat"))
            if not files:
                raise FileNotFoundError(f"paths: no *.dat files in {str(path)!r}")
        else:
            files = [_existing(path, "paths")]
    else:
        files = [_existing(p, "paths") for p in paths]
        if not files:
            raise ValueError("paths: expected at least one file")
    ids, observations, redshift, mwebv, peak = [], [], [], [], []
    for path in files:
        header, obs = _parse_snana_text(path)
        ids.append(header["SNID"])
        _check_values(
            str(path), header["SNID"], *(obs[k] for k in ("MJD", "FLUXCAL", "FLUXCALERR"))
        )
        observations.append((obs["MJD"], obs["FLT"], obs["FLUXCAL"], obs["FLUXCALERR"]))
        redshift.append(_leading_float(header.get("REDSHIFT_FINAL"), path, "REDSHIFT_FINAL"))
        mwebv.append(_leading_float(header.get("MWEBV"), path, "MWEBV"))
        peak.append(_leading_float(header.get("SEARCH_PEAKMJD"), path, "SEARCH_PEAKMJD"))
    if len(set(ids)) != len(ids):
        raise ValueError("paths: two files hold the same SNID")
    source = str(files[0].parent) if len(files) > 1 else str(files[0])
    band_names, time, flux, err, mask = _pack(ids, observations, bands, max_points, source)
    return LightCurves(
        ids=tuple(ids),
        bands=band_names,
        time=time,
        flux=flux,
        flux_err=err,
        mask=mask,
        redshift=np.asarray(redshift),
        meta={"MWEBV": np.asarray(mwebv), "SEARCH_PEAKMJD": np.asarray(peak)},
        source=source,
    )


def _leading_float(value: str | None, path: Path, key: str) -> float:
    if value is None:
        return math.nan
    try:
        return float(value.split()[0])
    except (IndexError, ValueError) as err:
        raise ValueError(f"{path}: {key} is not a number: {value!r}") from err


def _parse_snana_text(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    header: dict[str, str] = {}
    varlist: list[str] | None = None
    rows: list[list[str]] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line or ":" not in line:
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "VARLIST":
            varlist = value.split()
        elif key == "OBS":
            if varlist is None:
                raise ValueError(f"{path} line {number}: OBS row before VARLIST")
            values = value.split()
            if len(values) != len(varlist):
                raise ValueError(
                    f"{path} line {number}: expected {len(varlist)} values ({' '.join(varlist)}); "
                    f"got {len(values)}"
                )
            rows.append(values)
        elif key == "END":
            break
        elif key not in header:
            header[key] = value
    if "SNID" not in header or varlist is None:
        raise ValueError(f"{path}: expected SNID and VARLIST header lines")
    missing = [c for c in ("MJD", "FLT", "FLUXCAL", "FLUXCALERR") if c not in varlist]
    if missing:
        raise ValueError(f"{path}: VARLIST lacks the columns {missing}")
    if "NOBS" in header and int(_leading_float(header["NOBS"], path, "NOBS")) != len(rows):
        raise ValueError(f"{path}: NOBS says {header['NOBS']} but {len(rows)} OBS rows follow")
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(varlist)
    obs: dict[str, np.ndarray] = {}
    for name in ("MJD", "FLT", "FLUXCAL", "FLUXCALERR"):
        values = columns[varlist.index(name)]
        if name == "FLT":
            obs[name] = np.asarray(values, dtype=str)
            continue
        try:
            obs[name] = np.asarray(values, dtype=np.float64)
        except ValueError as err:
            raise ValueError(f"{path}: column {name} holds a value that is not a number") from err
    return header, obs


# --------------------------------------------------------------------------- tables
def _with_unit(column: Any) -> Any:
    """A Quantity for a Quantity or a Table column that carries a unit; else the column."""
    if isinstance(column, u.Quantity) or getattr(column, "unit", None) is None:
        return column
    return u.Quantity(column)


def _flux_values(column: Any, name: str, zero_point: float, source: str) -> np.ndarray:
    """Fluxes in the system of ``zero_point`` (mag), converting spectral flux densities (AB).

    Plain numbers and dimensionless columns are taken to be in that system already.
    """
    values = _with_unit(column)
    if isinstance(values, u.Quantity):
        if values.unit.is_equivalent(u.Jy):
            # AB: flux 1 in this system has magnitude zero_point: 10^(-0.4 (zp - 8.90)) Jy.
            values = values.to_value(u.Unit(10 ** (-0.4 * (zero_point - 8.90)) * u.Jy))
        elif values.unit.is_equivalent(u.dimensionless_unscaled):
            values = values.to_value(u.dimensionless_unscaled)
        else:
            raise ValueError(
                f"{source}: column {name!r}: expected fluxes in the zero point's system "
                f"(plain numbers) or a spectral flux density such as nJy; got unit {values.unit}"
            )
    return np.asarray(values, dtype=np.float64)


def lightcurves_from_table(
    table: Table,
    *,
    bands: Sequence[str] | None = None,
    max_points: int | None = None,
    zero_point: float = FLUXCAL_ZERO_POINT,
    source: str = "table",
) -> LightCurves:
    """Light curves from an astropy Table in long format: one row per observation.

    The inverse of `LightCurves.to_table` (stacked over objects). Columns: ``mjd``
    (days; a Quantity in a time unit or plain MJD), ``band``, ``flux``,
    ``flux_err`` (plain numbers in the system of ``zero_point``, or a spectral
    flux density such as nJy, converted with the AB zero point), and ``id`` when the table holds
    more than one object (else ``meta["id"]`` or ``"0"``); an optional
    ``redshift`` column must be constant within each object.

    Args:
        table: the observations.
        bands: bands to keep, in this order; default all, blue to red.
        max_points: padded length per band; default the largest count.
        zero_point: zero point of the fluxes, mag.
        source: name for error messages.

    Returns:
        `LightCurves`, objects in order of first appearance.

    Raises:
        ValueError: if a column is missing, ``mjd`` has non-time units, values are
            non-finite, errors are not positive, or a redshift varies within an object.
    """
    missing = [c for c in ("mjd", "band", "flux", "flux_err") if c not in table.colnames]
    if missing:
        raise ValueError(f"{source}: expected columns mjd, band, flux, flux_err; missing {missing}")
    mjd = _with_unit(table["mjd"])
    if isinstance(mjd, u.Quantity):
        if not mjd.unit.is_equivalent(u.day):
            raise ValueError(f"{source}: column 'mjd': expected a time unit (day); got {mjd.unit}")
        mjd = mjd.to_value(u.day)
    mjd = np.asarray(mjd, dtype=np.float64)
    flux = _flux_values(table["flux"], "flux", zero_point, source)
    err = _flux_values(table["flux_err"], "flux_err", zero_point, source)
    band = np.asarray([str(b) for b in table["band"]])
    if "id" in table.colnames:
        obj = np.asarray([str(i) for i in table["id"]])
    else:
        obj = np.full(len(table), str(table.meta.get("id", "0")))
    ids = list(dict.fromkeys(obj.tolist()))
    observations, redshift = [], []
    for name in ids:
        rows = obj == name
        _check_values(source, name, mjd[rows], flux[rows], err[rows])
        observations.append((mjd[rows], band[rows], flux[rows], err[rows]))
        if "redshift" in table.colnames:
            z = np.unique(np.asarray(table["redshift"], dtype=np.float64)[rows])
            if len(z) != 1:
                raise ValueError(f"{source}: object {name!r} has several redshifts {z.tolist()}")
            redshift.append(float(z[0]))
        else:
            redshift.append(
                float(table.meta.get("redshift", math.nan)) if len(ids) == 1 else math.nan
            )
    band_names, time, fl, fe, mask = _pack(ids, observations, bands, max_points, source)
    return LightCurves(
        ids=tuple(ids),
        bands=band_names,
        time=time,
        flux=fl,
        flux_err=fe,
        mask=mask,
        redshift=np.asarray(redshift),
        zero_point=float(zero_point),
        source=source,
    )


def read_snana_table(path: str | Path) -> Table:
    """Read an SNANA key/value table (``VARNAMES:`` header, ``SN:`` rows), e.g. a FITRES file.

    Columns whose values all parse as numbers become float (or int) columns;
    the others stay strings.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if there is no ``VARNAMES:`` line before the first row, or a
            row has the wrong number of values.
    """
    path = _existing(path, "path")
    names: list[str] | None = None
    rows: list[list[str]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "VARNAMES:":
            names = fields[1:]
        elif fields[0] == "SN:":
            if names is None:
                raise ValueError(f"path: {path} line {number}: SN row before VARNAMES")
            if len(fields) - 1 != len(names):
                raise ValueError(
                    f"path: {path} line {number}: expected {len(names)} values; "
                    f"got {len(fields) - 1}"
                )
            rows.append(fields[1:])
    if names is None:
        raise ValueError(f"path: {path} has no VARNAMES line")
    columns: dict[str, Any] = {}
    for k, name in enumerate(names):
        values = [r[k] for r in rows]
        columns[name] = _typed_column(values)
    return Table(columns, meta={"source": str(path)})


def _typed_column(values: list[str]) -> np.ndarray:
    for dtype in (np.int64, np.float64):
        try:
            return np.asarray(values, dtype=dtype)
        except ValueError:
            continue
    return np.asarray(values, dtype=str)


def read_ps1mds_metadata(path: str | Path) -> Table:
    """Read the SuperRAENN PS1-MDS meta table (``# SN Redshift Type T_explosion MW(EBV)``).

    Returns:
        A Table with columns ``SN``, ``redshift``, ``type`` (empty where
        unlabelled, ``-`` in the file), ``t_explosion`` (MJD), ``mwebv``.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if a row does not have five values or a number does not parse.
    """
    path = _existing(path, "path")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 5:
            raise ValueError(f"path: {path} line {number}: expected 5 values; got {len(fields)}")
        try:
            rows.append(
                (fields[0], float(fields[1]), "" if fields[2] == "-" else fields[2],
                 float(fields[3]), float(fields[4]))
            )  # fmt: skip
        except ValueError as err:
            raise ValueError(f"path: {path} line {number}: {err}") from err
    names = ("SN", "redshift", "type", "t_explosion", "mwebv")
    return Table(rows=rows, names=names, meta={"source": str(path)})
