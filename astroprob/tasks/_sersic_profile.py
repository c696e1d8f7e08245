"""The Sérsic profile in Fourier space: an exact table, built once, interpolated in JAX.

A Sérsic profile with unit flux and unit half-light radius is
``I(r) = C exp(-b_n r^(1/n))`` with ``γ(2n, b_n) = Γ(2n) / 2`` and
``C = b_n^(2n) / (2π n Γ(2n))``. Its two-dimensional Fourier transform is the
Hankel transform ``F(κ; n) = 2π ∫ I(r) J0(κ r) r dr``, with ``F(0) = 1``; a
galaxy of half-light radius ``r_e`` has ``F(κ = k r_e)``.

The table holds ``F`` on a grid of ``n`` and ``ln κ``. Each entry is computed in
float64 by one of two exact methods:

* For large ``κ``, the series in ``κ^(-2 - m/n)`` that comes from expanding
  ``exp(-b r^(1/n))`` in powers ``r^(m/n)`` at the centre; each power has an
  analytic Hankel transform, ``∫ r^(λ+1) J0(κ r) dr = 2^(λ+1) Γ(1 + λ/2) /
  (Γ(-λ/2) κ^(λ+2))``. The series converges for ``n > 1`` and is asymptotic
  for ``n ≤ 1``; it is truncated before its smallest term and used only where
  that term's envelope (``|1/Γ(-x)| ≤ Γ(1 + x)/π``) plus ``1e-15`` times its
  largest term, a bound on the error, is below ``1e-12``.
* Elsewhere, ``F = E[J0(κ (s/b)^n)]`` with ``s ~ Gamma(2n, 1)`` (the enclosed
  flux of a Sérsic profile is a regularised incomplete gamma function), by
  Gauss-Legendre panels that follow both ``sqrt(s)`` and the phase of ``J0``.

Both reproduce the closed forms at ``n = 0.5`` (Gaussian) and ``n = 1``
(exponential) to ``1e-14`` and GalSim's ``Sersic.kValue`` to its own accuracy.
The grid is ``n = 0.45 … 6.10`` in steps of 0.05 and ``ln κ = ln 1e-4 - 0.05 …
ln 1e6 + 0.10`` in steps of 0.05; Catmull-Rom splines in both directions give a
maximum absolute error of about ``1e-5`` on ``0.5 ≤ n ≤ 6`` and make ``F``
continuously differentiable in ``n`` and ``κ``. Outside the grid ``F`` is held
at its value on the edge: below ``κ = 1e-4``, ``1 - F < 3e-7``; above
``κ = 1e6``, ``F < 1e-9``.

Rebuild the shipped table (about a minute on one core) with
``python benchmarks/build_sersic_table.py`` (it calls `write_table`).

References:
    Sérsic (1963), Boletín de la Asociación Argentina de Astronomía 6, 41.
    Graham & Driver (2005), "A concise reference to (projected) Sérsic R^1/n
    quantities", PASA 22, 118, https://arxiv.org/abs/astro-ph/0503176
    (``b_n``, the enclosed light as an incomplete gamma function).
"""

from __future__ import annotations

import functools
import io
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float
from scipy import special

N_MIN = 0.5
"""Smallest supported Sérsic index."""
N_MAX = 6.0
"""Largest supported Sérsic index."""

TABLE_FILE = "sersic_hankel.npz"
_N_STEP = 0.05
_N_FIRST = N_MIN - _N_STEP
_N_COUNT = int(round((N_MAX - N_MIN) / _N_STEP)) + 4
_X_STEP = 0.05
_X_FIRST = float(np.log(1e-4)) - _X_STEP
_X_COUNT = int(round((np.log(1e6) - np.log(1e-4)) / _X_STEP)) + 4

_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(20)


def sersic_b(n: np.ndarray | float) -> np.ndarray | float:
    """``b_n`` such that half the light lies within the half-light radius (float64)."""
    return special.gammaincinv(2.0 * np.asarray(n, np.float64), 0.5)


def _series(kappa: np.ndarray, n: float, num_terms: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Large-κ series of F and a bound on its error, both ``kappa.shape``.

    Term ``m`` carries ``1/Γ(-λ/2)``, ``λ = m/n``, which vanishes near even
    integers ``λ``; the truncation point and the error bound therefore use the
    envelope ``|1/Γ(-x)| <= Γ(1 + x)/π``, not the terms themselves.
    """
    b = sersic_b(n)
    log_c = 2 * n * np.log(b) - np.log(2 * np.pi * n) - special.gammaln(2 * n)
    m = np.arange(1, num_terms + 1)
    lam = m / n
    # 1/Γ(-x) = -Γ(1 + x) sin(πx)/π (reflection), kept in logs: it overflows for x > 170.
    x = lam / 2
    sine = np.sin(np.pi * (x - 2.0 * np.round(x / 2.0)))
    sign = -np.sign(sine)
    log_common = (
        np.log(2 * np.pi)
        + log_c
        + m * np.log(b)
        - special.gammaln(m + 1)
        + (lam + 1) * np.log(2)
        + special.gammaln(1 + lam / 2)
    )
    log_kappa = np.log(kappa)[:, None]
    log_envelope = log_common + special.gammaln(1 + lam / 2) - np.log(np.pi)
    log_envelope = log_envelope[None, :] - (lam[None, :] + 2) * log_kappa
    with np.errstate(divide="ignore"):
        log_terms = log_common + special.gammaln(1 + x) + np.log(np.abs(sine)) - np.log(np.pi)
    log_terms = log_terms[None, :] - (lam[None, :] + 2) * log_kappa
    terms = sign * (-1.0) ** m * np.exp(np.minimum(log_terms, 700.0))
    # Truncate before the smallest envelope term (optimal for an asymptotic series).
    stop = np.argmin(log_envelope, axis=1)
    keep = np.arange(num_terms)[None, :] < stop[:, None]
    total = np.sum(np.where(keep, terms, 0.0), axis=1)
    truncation = np.exp(np.minimum(log_envelope[np.arange(len(kappa)), stop], 700.0))
    cancellation = 1e-15 * np.max(np.where(keep, np.abs(terms), 0.0), axis=1, initial=0.0)
    return total, truncation + cancellation


def _quadrature(kappa: np.ndarray, n: float, tail: float = 1e-15) -> np.ndarray:
    """F = E[J0(κ (s/b)^n)], s ~ Gamma(2n, 1), by oscillation-following panels."""
    b = sersic_b(n)
    s_max = special.gammainccinv(2 * n, tail)
    s_fine = np.linspace(0.0, np.sqrt(s_max), 20001) ** 2
    out = np.empty(len(kappa))
    for i, k in enumerate(kappa):
        # Panel variable: 200 panels across sqrt(s) plus one per half oscillation of J0.
        t = 200 * np.sqrt(s_fine / s_max) + k * (s_fine / b) ** n / np.pi
        num_panels = int(np.ceil(t[-1]))
        if num_panels > 10_000_000:
            raise RuntimeError(f"quadrature at kappa={k:g}, n={n:g} needs {num_panels} panels")
        edges = np.interp(np.linspace(0.0, t[-1], num_panels + 1), t, s_fine)
        total = 0.0
        for start in range(0, num_panels, 50_000):  # chunks bound the memory
            stop = min(start + 50_000, num_panels)
            lo = np.sqrt(edges[start:stop, None])
            hi = np.sqrt(edges[start + 1 : stop + 1, None])
            u = 0.5 * (hi - lo) * _GAUSS_NODES + 0.5 * (hi + lo)
            w = 0.5 * (hi - lo) * _GAUSS_WEIGHTS
            s = u**2
            density = (
                2
                * u
                * np.exp((2 * n - 1) * np.log(np.maximum(s, 1e-300)) - s - special.gammaln(2 * n))
            )
            total += float(np.sum(w * density * special.j0(k * (s / b) ** n)))
        out[i] = total
    return out


def hankel_transform(kappa: np.ndarray, n: float) -> np.ndarray:
    """Exact ``F(κ; n)`` in float64 for a unit-flux, unit-half-light-radius Sérsic profile.

    Args:
        kappa: positive wavenumbers times the half-light radius, any shape.
        n: Sérsic index.

    Returns:
        F, same shape as ``kappa``.
    """
    kappa = np.asarray(kappa, np.float64)
    flat = kappa.reshape(-1)
    total, error = _series(flat, float(n))
    out = total.copy()
    slow = np.flatnonzero(~(error < 1e-12))
    # Where every term vanishes (1/(2n) an integer, e.g. n = 1/2, a Gaussian), F falls
    # faster than any power: integrate with increasing κ until it is negligible, then stop.
    smooth = float(1.0 / (2.0 * n)).is_integer()
    for i in slow[np.argsort(flat[slow])]:
        out[i] = _quadrature(flat[i : i + 1], float(n))[0]
        if smooth and abs(out[i]) < 1e-16:
            out[slow[flat[slow] > flat[i]]] = 0.0
            break
    return out.reshape(kappa.shape)


def table_grid() -> tuple[np.ndarray, np.ndarray]:
    """The Sérsic indices ``(num_n,)`` and ``ln κ`` values ``(num_x,)`` of the table."""
    n = _N_FIRST + _N_STEP * np.arange(_N_COUNT)
    x = _X_FIRST + _X_STEP * np.arange(_X_COUNT)
    return n, x


def build_table() -> np.ndarray:
    """Compute the table ``F[n_i, x_j]`` (float64, ``(num_n, num_x)``)."""
    n_grid, x_grid = table_grid()
    kappa = np.exp(x_grid)
    return np.stack([hankel_transform(kappa, n) for n in n_grid])


class SersicTable(NamedTuple):
    """``F(κ; n)`` on a regular grid of ``n`` and ``x = ln κ``.

    Attributes:
        values: ``F``, shape ``(num_n, num_x)``, float32.
        b: ``b_n`` of each row, ``(num_n,)``.
        log_norm: ``log C``, the log central intensity of each row, ``(num_n,)``.
        n_first: ``n`` of row 0.
        n_step: spacing of ``n``.
        x_first: ``ln κ`` of column 0.
        x_step: spacing of ``ln κ``.
    """

    values: Array
    b: Array
    log_norm: Array
    n_first: float
    n_step: float
    x_first: float
    x_step: float


@functools.cache
def load_table() -> SersicTable:
    """The shipped table (``data/sersic_hankel.npz``), read once."""
    raw = resources.files("astroprob.tasks").joinpath("data", TABLE_FILE).read_bytes()
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
        values = np.asarray(data["values"], np.float32)
        n_grid = np.asarray(data["n"], np.float64)
        x_grid = np.asarray(data["log_kappa"], np.float64)
    b = sersic_b(n_grid)
    log_norm = 2 * n_grid * np.log(b) - np.log(2 * np.pi * n_grid) - special.gammaln(2 * n_grid)
    return SersicTable(
        values=jnp.asarray(values),
        b=jnp.asarray(b, jnp.float32),
        log_norm=jnp.asarray(log_norm, jnp.float32),
        n_first=float(n_grid[0]),
        n_step=float(n_grid[1] - n_grid[0]),
        x_first=float(x_grid[0]),
        x_step=float(x_grid[1] - x_grid[0]),
    )


def _catmull_rom(p0: Array, p1: Array, p2: Array, p3: Array, t: Array) -> Array:
    """Catmull-Rom spline through ``p1`` (t=0) and ``p2`` (t=1)."""
    return p1 + 0.5 * t * (
        (p2 - p0) + t * ((2 * p0 - 5 * p1 + 4 * p2 - p3) + t * (3 * (p1 - p2) + p3 - p0))
    )


def _n_stencil(table: SersicTable, n: Array) -> tuple[Array, Array]:
    position = (n - table.n_first) / table.n_step
    i = jnp.clip(jnp.floor(position).astype(jnp.int32), 1, table.values.shape[0] - 3)
    return i, position - i


def profile_row(table: SersicTable, n: Float[Array, ""]) -> Float[Array, " num_x"]:
    """``F(x; n)`` on the table's ``ln κ`` grid for one Sérsic index (spline in ``n``)."""
    i, t = _n_stencil(table, n)
    return _catmull_rom(*(table.values[i + offset] for offset in (-1, 0, 1, 2)), t)


def real_space_constants(table: SersicTable, n: Float[Array, ""]) -> tuple[Array, Array]:
    """``(b_n, log C)`` for one Sérsic index (spline in ``n``); ``I(r) = C exp(-b r^(1/n))``."""
    i, t = _n_stencil(table, n)
    b = _catmull_rom(*(table.b[i + offset] for offset in (-1, 0, 1, 2)), t)
    log_norm = _catmull_rom(*(table.log_norm[i + offset] for offset in (-1, 0, 1, 2)), t)
    return b, log_norm


def fourier_profile(table: SersicTable, row: Float[Array, " num_x"], kappa_sq: Array) -> Array:
    """``F(κ; n)`` at ``κ² = kappa_sq`` (any shape), from the row of `profile_row`."""
    num_x = row.shape[0]
    x_lo = table.x_first + table.x_step
    x_hi = table.x_first + (num_x - 3) * table.x_step
    x = 0.5 * jnp.log(jnp.clip(kappa_sq, np.exp(2 * x_lo), np.exp(2 * x_hi)))
    position = (x - table.x_first) / table.x_step
    j = jnp.clip(jnp.floor(position).astype(jnp.int32), 1, num_x - 3)
    t = position - j
    return _catmull_rom(row[j - 1], row[j], row[j + 1], row[j + 2], t)


def write_table(path: str | None = None) -> str:
    """Compute the table and write it (default: the shipped ``data/sersic_hankel.npz``).

    Returns:
        The path written.
    """
    if path is None:
        path = str(Path(__file__).with_name("data") / TABLE_FILE)
    n_grid, x_grid = table_grid()
    values = build_table()
    with open(path, "wb") as handle:
        np.savez_compressed(handle, values=values.astype(np.float32), n=n_grid, log_kappa=x_grid)
    return path
