"""Posterior catalogs: summaries as a `~astropy.table.QTable` with units, written atomically.

A catalog has one row per object: its identifier and any columns carried
through from the input (sky position, source file, pixel position), then the
posterior summary of every parameter from `astroprob.Posterior.summary` (mean,
std, median, 68 % and 95 % central intervals), each in the parameter's unit.
`write_table` writes it to FITS or ECSV through a temporary file in the same
folder and a rename, so a crash or an error never leaves a half-written
catalog. `write_samples` stores the full posterior samples, one row per object
and one vector column per parameter, and `read_samples` reads them back.

Examples:
    >>> import numpy as np, astropy.units as u
    >>> from astropy.table import QTable
    >>> summary = QTable({"obs": [0, 1], "flux_mean": [10.0, 20.0] * u.ct})
    >>> cat = posterior_catalog(summary, ids=["a", "b"], columns={"ra": [1.0, 2.0] * u.deg})
    >>> cat.colnames
    ['id', 'ra', 'flux_mean']
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io.fits.verify import VerifyWarning
from astropy.table import QTable

from astroprob.inference._checkpoint import publish_mode

__all__ = [
    "TABLE_FORMATS",
    "posterior_catalog",
    "read_samples",
    "table_format",
    "write_samples",
    "write_table",
]

TABLE_FORMATS = {".fits": "fits", ".fit": "fits", ".fits.gz": "fits", ".ecsv": "ascii.ecsv"}
"""File suffixes `write_table` knows, and astropy's name of their format."""


def table_format(path: str | Path) -> str:
    """Astropy's format name for ``path`` from its suffix (see `TABLE_FORMATS`).

    Raises:
        ValueError: for any other suffix.
    """
    name = Path(path).name.lower()
    for suffix, fmt in sorted(TABLE_FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise ValueError(
        f"{path}: expected a file name ending in one of {sorted(TABLE_FORMATS)}; got {name!r}"
    )


def posterior_catalog(
    summary: QTable,
    *,
    ids: Any = None,
    columns: Mapping[str, Any] | None = None,
) -> QTable:
    """One row per object: ``id``, the carried-through ``columns``, then the summary.

    Args:
        summary: a posterior summary (`astroprob.Posterior.summary`), one row per
            observation; its ``obs`` index column is replaced by ``id``.
        ids: identifiers, one per row; default the 0-based row index.
        columns: more per-object columns (arrays or Quantities of length ``n``),
            e.g. ``{"ra": ra, "dec": dec}``, placed after ``id`` in this order.

    Returns:
        A new `~astropy.table.QTable`; ``meta`` is copied from ``summary``.

    Raises:
        ValueError: if ``ids`` or a column has the wrong length, a name repeats a
            summary column, or the ids are not distinct.
    """
    n = len(summary)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if ids.shape != (n,):
        raise ValueError(f"ids: expected {n} identifiers (one per row); got shape {ids.shape}")
    if len(set(ids.tolist())) != n:
        raise ValueError("ids: expected distinct identifiers; some repeat")
    table = QTable()
    table["id"] = ids
    for name, values in (columns or {}).items():
        if name in summary.colnames or name == "id":
            raise ValueError(f"columns: {name!r} clashes with a column of the summary")
        if len(values) != n:
            raise ValueError(f"columns[{name!r}]: expected {n} values; got {len(values)}")
        table[name] = values
    for name in summary.colnames:
        if name != "obs":
            table[name] = summary[name]
    table.meta.update(summary.meta)
    return table


def write_table(table: QTable, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``table`` to FITS or ECSV (by suffix) atomically: a temporary file, then a rename.

    Args:
        table: the table; units are kept (FITS ``TUNITn``, ECSV header).
        path: the output file, ending in ``.fits``, ``.fit``, ``.fits.gz`` or ``.ecsv``.
        overwrite: replace an existing file.

    Returns:
        The path written.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is false.
        FileNotFoundError: if the folder does not exist.
        ValueError: for an unknown suffix.
    """
    path = Path(path)
    fmt = table_format(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; choose another name or overwrite")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: the folder {path.parent} does not exist")
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".gz") else path.suffix
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            # Meta keys longer than 8 characters become standard HIERARCH cards in FITS.
            warnings.filterwarnings("ignore", "Keyword name .* HIERARCH card", VerifyWarning)
            table.write(tmp, format=fmt, overwrite=True)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        publish_mode(tmp, path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_samples(
    path: str | Path,
    samples: Any,
    parameter_names: Sequence[str],
    *,
    units: Any = None,
    ids: Any = None,
    overwrite: bool = False,
) -> Path:
    """Write posterior samples to FITS: one row per object, one vector column per parameter.

    Args:
        path: output file (``.fits``; ``.ecsv`` works too but is large).
        samples: ``(n_obs, num_samples, dim)`` or ``(num_samples, dim)`` array.
        parameter_names: ``dim`` column names.
        units: ``dim`` units (``None`` for dimensionless); default none.
        ids: ``n_obs`` identifiers; default the row index.
        overwrite: replace an existing file.

    Returns:
        The path written (atomically, as in `write_table`).

    Raises:
        ValueError: if the shapes, names, units or ids disagree.
    """
    array = np.asarray(samples)
    if array.ndim == 2:
        array = array[None]
    dim = len(parameter_names)
    if array.ndim != 3 or array.shape[2] != dim:
        raise ValueError(
            f"samples: expected shape (n_obs, num_samples, {dim}) or (num_samples, {dim}); "
            f"got {np.shape(samples)}"
        )
    units = (None,) * dim if units is None else tuple(units)
    if len(units) != dim:
        raise ValueError(f"units: expected {dim} entries; got {len(units)}")
    table = QTable()
    table["id"] = np.arange(len(array)) if ids is None else np.asarray(ids)
    if len(table["id"]) != len(array):
        raise ValueError(f"ids: expected {len(array)} identifiers; got {len(table['id'])}")
    for j, (name, unit) in enumerate(zip(parameter_names, units, strict=True)):
        column = array[:, :, j]
        table[name] = column if unit is None else column * u.Unit(unit)
    table.meta["num_samples"] = int(array.shape[1])
    return write_table(table, path, overwrite=overwrite)


def read_samples(path: str | Path) -> QTable:
    """Read a file written by `write_samples` (``id`` and one vector column per parameter).

    Raises:
        FileNotFoundError: if the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return QTable.read(path, format=table_format(path))
