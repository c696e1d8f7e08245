"""SNANA light-curve readers: counts match the data README, bad files raise, nothing is clipped."""

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from astroprob.io.lightcurves import (
    LightCurves,
    read_ps1mds_metadata,
    read_snana_fits,
    read_snana_table,
    read_snana_text,
)


def _shared(name):
    """``<repo>/../shared/data/<name>``; fails loudly when the checkout lacks it."""
    repo = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
    path = repo.parent / "shared" / "data" / name
    assert path.is_dir(), f"shared test data missing: {path}"
    return path


DES = _shared("des_sn5yr_lowz_foundation")
PS1 = _shared("ps1mds_superraenn_examples")


@pytest.fixture(scope="module")
def foundation():
    return read_snana_fits(DES / "DES-SN5YR_Foundation_HEAD.FITS.gz")


@pytest.fixture(scope="module")
def lowz():
    return read_snana_fits(DES / "DES-SN5YR_LOWZ_HEAD.FITS.gz")


@pytest.fixture(scope="module")
def ps1():
    return read_snana_text(PS1 / "example_LCs")


# ----------------------------------------------------------- counts from the README
def test_foundation_counts_match_readme(foundation):
    # README: 185 Foundation SNe Ia (Pan-STARRS griz), 6 195 PHOT rows = data + 1 separator each.
    assert len(foundation) == 185
    assert foundation.bands == ("g", "r", "i", "z")
    assert int(foundation.mask.sum()) == 6195 - 185
    assert np.all(foundation.meta["SNTYPE"] == 1)
    assert np.all(foundation.num_points.sum(axis=1) > 0)


def test_lowz_counts_match_readme(lowz, foundation):
    # README: 342 low-z SNe Ia, 36 974 PHOT rows; 527 real SNe Ia in all.
    assert len(lowz) == 342
    assert int(lowz.mask.sum()) == 36974 - 342
    assert len(lowz) + len(foundation) == 527
    assert "CSP-B/e" in lowz.bands
    assert "CFA3K-r/s" in lowz.bands
    assert np.all(lowz.meta["SNTYPE"] == 1)


def test_padding_layout(foundation):
    lc = foundation
    assert lc.time.shape == lc.flux.shape == lc.mask.shape == (185, 4, lc.max_points)
    assert lc.max_points == int(lc.num_points.max())
    # Observations first, time-ordered; padding is zero.
    first_gap = np.argmin(lc.mask, axis=2)
    full = lc.mask.all(axis=2)
    for i, b in zip(*np.nonzero(~full), strict=True):
        assert not lc.mask[i, b, first_gap[i, b] :].any()
    t = np.where(lc.mask, lc.time, 1e9)
    assert np.all(np.diff(t, axis=2)[lc.mask[..., 1:]] >= 0)
    for name in ("time", "flux", "flux_err"):
        assert np.all(getattr(lc, name)[~lc.mask] == 0)
    assert np.all(lc.flux_err[lc.mask] > 0)


def test_values_match_the_fits_table(foundation):
    phot = fits.getdata(DES / "DES-SN5YR_Foundation_PHOT.FITS.gz", 1)
    head = fits.getdata(DES / "DES-SN5YR_Foundation_HEAD.FITS.gz", 1)
    k = 7
    rows = slice(head["PTROBS_MIN"][k] - 1, head["PTROBS_MAX"][k])
    table = foundation.to_table(k)
    assert table.meta["id"] == head["SNID"][k].strip()
    assert table["mjd"].unit == u.day
    order = np.argsort(phot["MJD"][rows], kind="stable")
    np.testing.assert_allclose(table["mjd"].value, phot["MJD"][rows][order])
    np.testing.assert_allclose(
        np.sort(table["flux"]), np.sort(phot["FLUXCAL"][rows].astype(np.float64))
    )


def test_ignore_file_removes_listed_points(foundation):
    ignore = DES / "DES-SN5YR_Foundation.IGNORE"
    cleaned = read_snana_fits(DES / "DES-SN5YR_Foundation_HEAD.FITS.gz", ignore=ignore)
    entries = {
        tuple(line.split()[1:])
        for line in ignore.read_text().splitlines()
        if line.startswith("IGNORE:")
    }
    removed = int(foundation.mask.sum() - cleaned.mask.sum())
    assert removed == int(cleaned.meta["NUM_IGNORED"].sum()) == len(entries)
    i = cleaned.index("2016afk")
    r = cleaned.bands.index("r")
    assert not np.any(np.abs(cleaned.time[i, r][cleaned.mask[i, r]] - 57457.3485) < 1e-3)


def test_ps1mds_counts_and_types(ps1):
    assert len(ps1) == 10
    assert ps1.bands == ("g", "r", "i", "z")
    for k, sn in enumerate(ps1.ids):
        text = (PS1 / "example_LCs" / f"PS1_PS1MD_{sn}.snana.dat").read_text()
        nobs = int(next(line for line in text.splitlines() if line.startswith("NOBS:")).split()[1])
        assert int(ps1.num_points[k].sum()) == nobs
        assert 250 <= nobs <= 500  # README: about 300 observations per object
    assert np.any(ps1.flux[ps1.mask] < 0)  # non-detections keep their negative flux
    meta = read_ps1mds_metadata(PS1 / "example_meta_table.dat")
    types = {sn: t for sn, t in zip(meta["SN"], meta["type"], strict=True) if t}
    assert types == {
        "PSc000001": "SNII",
        "PSc000006": "SNIa",
        "PSc010411": "SNIbc",
        "PSc060270": "SLSN",
        "PSc070763": "SNIIn",
    }
    assert set(meta["SN"]) == set(ps1.ids)
    np.testing.assert_allclose(ps1.redshift[ps1.index("PSc000001")], 0.0713)


def test_snana_table_reader():
    meta = read_snana_table(DES / "DES-Dovekie_Metadata.csv")
    text = (DES / "DES-Dovekie_Metadata.csv").read_text()
    n_rows = sum(line.startswith("SN:") for line in text.splitlines())
    assert len(meta) == n_rows
    assert meta["PKMJD"].dtype.kind == "f"
    assert meta["CID"].dtype.kind == "U"
    row = meta[list(meta["CID"]).index("2004ef")]
    assert row["PKMJD"] == pytest.approx(53264.6641)


# ------------------------------------------------------------------ observation layout
def test_to_observation(foundation):
    lc = foundation.subset([0, 3])
    t_ref = lc.brightest_time(("g", "r"))
    obs = lc.to_observation(("r", "g"), 40, t_ref, zero_point=20.0)
    assert obs.shape == (2, 2, 40, 4)
    assert obs.dtype == np.float32
    r = lc.bands.index("r")
    n = int(lc.num_points[0, r])
    np.testing.assert_allclose(obs[0, 0, :n, 0], lc.time[0, r, :n] - t_ref[0], atol=1e-3)
    np.testing.assert_allclose(obs[0, 0, :n, 1], lc.flux[0, r, :n] * 10 ** (-0.4 * 7.5), rtol=1e-5)
    assert np.all(obs[0, 0, n:] == 0)
    assert np.all(obs[0, 0, :n, 3] == 1)
    # The brightest g/r point sits at time 0.
    brightest = np.argmax(np.where(obs[0, ..., 3] > 0, obs[0, ..., 1], -np.inf))
    assert obs[0].reshape(-1, 4)[brightest, 0] == 0.0


def test_to_observation_never_clips(foundation):
    lc = foundation.subset([0])
    t_ref = lc.brightest_time()
    with pytest.raises(ValueError, match="max_points"):
        lc.to_observation(lc.bands, 3, t_ref)
    with pytest.raises(ValueError, match="drop_outside"):
        lc.to_observation(lc.bands, 40, t_ref, time_window=(-1.0, 1.0))
    kept = lc.to_observation(lc.bands, 40, t_ref, time_window=(-1.0, 30.0), drop_outside=True)
    rel = lc.time[lc.mask] - t_ref[0]
    assert int(kept[..., 3].sum()) == int(np.sum((rel >= -1) & (rel <= 30)))
    with pytest.raises(ValueError, match="t_ref"):
        lc.to_observation(lc.bands, 40, np.nan)
    with pytest.raises(ValueError, match="bands"):
        lc.to_observation(("g", "y"), 40, t_ref)


# ------------------------------------------------------------------ malformed files
def _write_text(path, *, nobs=2, rows=None, varlist="MJD FLT FIELD FLUXCAL FLUXCALERR MAG MAGERR"):
    rows = rows or ["55000.0 g NULL 100.0 10.0 22.5 0.1", "55003.0 r NULL 120.0 12.0 22.3 0.1"]
    lines = ["SNID: TEST1", "REDSHIFT_FINAL: 0.1 +- 0.01 (CMB)", f"NOBS: {nobs}"]
    if varlist:
        lines.append(f"VARLIST: {varlist}")
    lines += [f"OBS: {r}" for r in rows] + ["END:"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_text_reader_on_a_small_file(tmp_path):
    lc = read_snana_text(_write_text(tmp_path / "ok.dat"))
    assert lc.ids == ("TEST1",)
    assert lc.bands == ("g", "r")
    np.testing.assert_allclose(lc.redshift, [0.1])
    with pytest.raises(ValueError, match="max_points"):
        read_snana_text(
            _write_text(
                tmp_path / "two.dat",
                nobs=3,
                rows=[
                    "55000.0 g NULL 1.0 1.0 nan 1",
                    "55001.0 g NULL 1.0 1.0 nan 1",
                    "55002.0 r NULL 1.0 1.0 nan 1",
                ],
            ),
            max_points=1,
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nobs": 5}, "NOBS says 5"),
        ({"varlist": ""}, "OBS row before VARLIST"),
        ({"varlist": "MJD FLT FIELD FLUXCAL"}, "expected 4 values"),
        ({"rows": ["55000.0 g NULL 100.0 -1.0 22.5 0.1"], "nobs": 1}, "FLUXCALERR <= 0"),
        ({"rows": ["55000.0 g NULL nan 1.0 22.5 0.1"], "nobs": 1}, "non-finite FLUXCAL"),
        ({"rows": ["55000.0 g NULL abc 1.0 22.5 0.1"], "nobs": 1}, "not a number"),
    ],
)
def test_malformed_text_files_raise(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        read_snana_text(_write_text(tmp_path / "bad.dat", **kwargs))


def _write_fits(tmp_path, *, ptr_max=2, mjd=(55000.0, 55001.0, -777.0), err=(1.0, 1.0, 0.0)):
    head = Table({"SNID": ["A"], "PTROBS_MIN": [1], "PTROBS_MAX": [ptr_max]})
    phot = Table(
        {
            "MJD": np.array(mjd),
            "BAND": ["g", "r", "-"],
            "FLUXCAL": [10.0, 20.0, 0.0],
            "FLUXCALERR": np.array(err),
        }
    )
    head.write(tmp_path / "X_HEAD.FITS", overwrite=True)
    phot.write(tmp_path / "X_PHOT.FITS", overwrite=True)
    return tmp_path / "X_HEAD.FITS"


def test_fits_reader_on_a_small_file(tmp_path):
    lc = read_snana_fits(_write_fits(tmp_path))
    assert lc.ids == ("A",)
    assert lc.bands == ("g", "r")
    assert np.isnan(lc.redshift[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ptr_max": 5}, "outside the 3 rows"),
        ({"ptr_max": 3}, "separator row"),
        ({"err": (1.0, -2.0, 0.0)}, "FLUXCALERR <= 0"),
        ({"mjd": (np.nan, 55001.0, -777.0)}, "non-finite MJD"),
    ],
)
def test_malformed_fits_files_raise(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        read_snana_fits(_write_fits(tmp_path, **kwargs))


def test_missing_files_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match="head"):
        read_snana_fits(tmp_path / "nothing_HEAD.FITS")
    Table({"SNID": ["A"]}).write(tmp_path / "Y_HEAD.FITS")
    Table({"MJD": [1.0]}).write(tmp_path / "Y_PHOT.FITS")
    with pytest.raises(ValueError, match="lacks the columns"):
        read_snana_fits(tmp_path / "Y_HEAD.FITS")
    (tmp_path / "Z_HEAD.FITS").write_text("not fits")
    (tmp_path / "Z_PHOT.FITS").write_text("not fits")
    with pytest.raises(ValueError, match="not a readable FITS file"):
        read_snana_fits(tmp_path / "Z_HEAD.FITS")
    bad_ignore = tmp_path / "bad.IGNORE"
    bad_ignore.write_text("IGNORE: A 12345.0 g\n")
    with pytest.raises(ValueError, match="matches no observation"):
        read_snana_fits(_write_fits(tmp_path), ignore=bad_ignore)


def test_light_curves_validate_their_arrays():
    shape = (1, 1, 2)
    good = {
        "ids": ("a",),
        "bands": ("g",),
        "time": np.zeros(shape),
        "flux": np.zeros(shape),
        "flux_err": np.ones(shape),
        "mask": np.ones(shape, bool),
        "redshift": np.zeros(1),
    }
    LightCurves(**good)
    with pytest.raises(ValueError, match="flux_err"):
        LightCurves(**{**good, "flux_err": np.zeros(shape)})
    with pytest.raises(ValueError, match="flux: expected finite"):
        LightCurves(**{**good, "flux": np.full(shape, np.nan)})
    with pytest.raises(ValueError, match="mask"):
        LightCurves(**{**good, "mask": np.ones(shape)})
