"""Derive the default `SersicGalaxy` prior from the real COSMOS galaxies, once.

Reads ``../shared/data/galsim_cosmos_example/`` (GalSim's example COSMOS data,
BSD-style GalSim license) and writes ``astroprob/tasks/data/sersic_cosmos_prior.json``,
which the package ships; the package itself never reads ``../shared``.

Sources and fits (maximum likelihood, float64, scipy):

* Structure: ``cosmos_sersics_sample_N300_cleaned.asc``, 276 galaxies with a
  Sérsic fit (Lackner & Gunn 2012): ``n_sersic``, the circularised half-light
  radius in arcsec (``sqrt(q)`` times the major-axis radius, checked against
  ``hlr[0]`` of the one galaxy it shares with the 100-galaxy catalogue) and
  ``|g| = (1 - q) / (1 + q)``.

  - ``ln n``: a normal truncated to ``[ln 0.5, ln 6]``, the supported range.
  - ``ln r_e``: a normal truncated to ``[ln 0.05", ln 2.5"]`` (the data span
    0.077" to 2.46").
  - ``|e|²``: a Beta distribution (the orientation is uniform).

* Brightness: ``MAG`` (HST/ACS F814W) of ``real_galaxy_catalog_23.5_example.fits``,
  100 galaxies (16.9 to 22.49 mag): number counts ``p(m) ∝ 10^(γ m)`` on
  ``[16.5, 22.5]``, i.e. a power law in flux, ``p(F) ∝ F^α`` with
  ``α = -1 - 2.5 γ`` (a truncated normal in magnitude does not fit: its
  maximum-likelihood mean runs off to infinity). The F814W zero point of the stamps' units,
  ``median(MAG + 2.5 log10 flux)`` with the Sérsic total flux of
  ``real_galaxy_catalog_23.5_example_fits.fits``, is recorded for reference.

Run from the repository root:  python benchmarks/derive_sersic_prior.py [--data DIR] [--check]
``--check`` recomputes and compares with the shipped file instead of writing it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
from astropy.table import Table
from scipy import optimize, stats

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "galsim_cosmos_example"
OUTPUT = ROOT / "astroprob" / "tasks" / "data" / "sersic_cosmos_prior.json"

STRUCTURE_FILE = "cosmos_sersics_sample_N300_cleaned.asc"
CATALOG_FILE = "real_galaxy_catalog_23.5_example.fits"
FITS_FILE = "real_galaxy_catalog_23.5_example_fits.fits"

N_RANGE = (0.5, 6.0)
RADIUS_RANGE = (0.05, 2.5)
MAG_RANGE = (16.5, 22.5)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fit_truncated_normal(x: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """Maximum-likelihood mean and standard deviation of a normal truncated to [low, high]."""

    def nll(p: np.ndarray) -> float:
        mu, log_sigma = p
        sigma = math.exp(log_sigma)
        a, b = (low - mu) / sigma, (high - mu) / sigma
        return -float(np.sum(stats.truncnorm.logpdf(x, a, b, loc=mu, scale=sigma)))

    start = np.array([x.mean(), math.log(x.std())])
    result = optimize.minimize(
        nll,
        start,
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 10_000},
    )
    return float(result.x[0]), float(math.exp(result.x[1]))


def fit_magnitude_slope(mag: np.ndarray, low: float, high: float) -> float:
    """Maximum-likelihood ``γ`` of ``p(m) ∝ 10^(γ m)`` on ``[low, high]``."""

    def nll(gamma: float) -> float:
        lam = gamma * math.log(10.0)
        # log of the normaliser (e^(λ high) - e^(λ low)) / λ, stable for either sign of λ
        log_z = max(lam * low, lam * high) + math.log(-math.expm1(-abs(lam) * (high - low)))
        log_z -= math.log(abs(lam))
        return -float(np.sum(lam * mag) - len(mag) * log_z)

    result = optimize.minimize_scalar(
        nll, bounds=(1e-3, 2.0), method="bounded", options={"xatol": 1e-10}
    )
    return float(result.x)


def _exponential_cdf(gamma: float, low: float, high: float):
    lam = gamma * math.log(10.0)
    return lambda m: np.expm1(lam * (np.clip(m, low, high) - low)) / math.expm1(lam * (high - low))


def derive(data: Path) -> dict:
    structure = np.loadtxt(data / STRUCTURE_FILE)
    n, radius, g = structure[:, 1], structure[:, 2], structure[:, 3]
    catalog = Table.read(data / CATALOG_FILE)
    fits = Table.read(data / FITS_FILE)
    mag = np.asarray(catalog["MAG"], np.float64)
    if not np.array_equal(np.asarray(catalog["IDENT"]), np.asarray(fits["IDENT"])):
        raise ValueError("catalogue and fits tables are not in the same IDENT order")
    zero_point = float(np.median(mag + 2.5 * np.log10(np.asarray(fits["flux"])[:, 0])))

    n_mu, n_sigma = fit_truncated_normal(np.log(n), *np.log(N_RANGE))
    r_mu, r_sigma = fit_truncated_normal(np.log(radius), *np.log(RADIUS_RANGE))
    gamma = fit_magnitude_slope(mag, *MAG_RANGE)
    a, b, _, _ = stats.beta.fit(g**2, floc=0.0, fscale=1.0)
    ks = {
        "sersic_n": stats.kstest(
            np.log(n),
            stats.truncnorm(*(np.log(N_RANGE) - n_mu) / n_sigma, loc=n_mu, scale=n_sigma).cdf,
        ).pvalue,
        "half_light_radius": stats.kstest(
            np.log(radius),
            stats.truncnorm(*(np.log(RADIUS_RANGE) - r_mu) / r_sigma, loc=r_mu, scale=r_sigma).cdf,
        ).pvalue,
        "ellipticity": stats.kstest(g**2, stats.beta(a, b).cdf).pvalue,
        "magnitude": stats.kstest(mag, _exponential_cdf(gamma, *MAG_RANGE)).pvalue,
    }
    return {
        "description": (
            "Default prior of astroprob.tasks.SersicGalaxy, fitted to real HST/ACS COSMOS "
            "galaxies by benchmarks/derive_sersic_prior.py"
        ),
        "sources": {
            "repository": "GalSim-developers/GalSim",
            "commit": "ee177aa50424dbbc5cec4a71cadd6297109c2aa1",
            "files": {
                name: {"path": path, "sha256": _sha256(data / name)}
                for name, path in (
                    (STRUCTURE_FILE, f"devel/external/{STRUCTURE_FILE}"),
                    (CATALOG_FILE, f"examples/data/{CATALOG_FILE}"),
                    (FITS_FILE, f"examples/data/{FITS_FILE}"),
                )
            },
            "license": "GalSim license (BSD-style); data from HST COSMOS",
            "cite": [
                "Rowe et al. 2015, A&C 10, 121 (GalSim)",
                "Mandelbaum et al. 2012, MNRAS 420, 1518 (COSMOS real galaxy sample)",
                "Lackner & Gunn 2012, MNRAS 421, 2277 (Sersic fits)",
            ],
        },
        "sersic_n": {
            "distribution": "exp of Normal(log_mean, log_std) truncated to [low, high]",
            "log_mean": n_mu,
            "log_std": n_sigma,
            "low": N_RANGE[0],
            "high": N_RANGE[1],
            "num_galaxies": int(len(n)),
            "ks_pvalue": float(ks["sersic_n"]),
        },
        "half_light_radius": {
            "distribution": "exp of Normal(log_mean, log_std) truncated to [low, high], arcsec",
            "unit": "arcsec",
            "definition": "circularised: sqrt(q) times the major-axis half-light radius",
            "log_mean": r_mu,
            "log_std": r_sigma,
            "low": RADIUS_RANGE[0],
            "high": RADIUS_RANGE[1],
            "num_galaxies": int(len(radius)),
            "ks_pvalue": float(ks["half_light_radius"]),
        },
        "ellipticity": {
            "distribution": "e1^2 + e2^2 ~ Beta(a, b), orientation uniform",
            "definition": "|e| = (1 - q) / (1 + q) (reduced shear)",
            "a": float(a),
            "b": float(b),
            "num_galaxies": int(len(g)),
            "ks_pvalue": float(ks["ellipticity"]),
        },
        "magnitude": {
            "distribution": "p(m) proportional to 10^(slope m) on [low, high], mag",
            "band": "HST/ACS F814W",
            "slope": gamma,
            "flux_power_law_index": -1.0 - 2.5 * gamma,
            "low": MAG_RANGE[0],
            "high": MAG_RANGE[1],
            "num_galaxies": int(len(mag)),
            "ks_pvalue": float(ks["magnitude"]),
            "catalogue_zero_point": zero_point,
            "catalogue_zero_point_note": (
                "median of MAG + 2.5 log10(Sersic flux) in the units of the COSMOS stamps; "
                "for reference only, SersicGalaxy uses its own zero_point"
            ),
        },
    }


def _close(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--check", action="store_true", help="compare with the shipped file")
    args = parser.parse_args(argv)
    derived = derive(args.data)
    if args.check:
        shipped = json.loads(OUTPUT.read_text())
        ok = _close(derived, shipped)
        print("matches" if ok else "DIFFERS from", OUTPUT)
        return 0 if ok else 1
    OUTPUT.write_text(json.dumps(derived, indent=2) + "\n")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
