"""Posterior catalogs and samples: units survive FITS and ECSV, writes are atomic, ArviZ export."""

import builtins
import sys

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from astroprob.io import (
    posterior_catalog,
    read_samples,
    table_format,
    to_inference_data,
    write_samples,
    write_table,
)


def _summary(n=3):
    rng = np.random.default_rng(0)
    table = QTable()
    table["obs"] = np.arange(n)
    table["flux_mean"] = rng.uniform(10, 20, n) * u.ct
    table["radius_median"] = rng.uniform(0.1, 1, n) * u.arcsec
    table["index_mean"] = rng.uniform(0.5, 4, n)
    table.meta["task"] = "sersic_galaxy"
    table.meta["num_samples"] = 100
    return table


def _catalog():
    return posterior_catalog(
        _summary(),
        ids=["g1", "g2", "g3"],
        columns={"ra": [150.1, 150.2, 150.3] * u.deg, "dec": [2.1, 2.2, 2.3] * u.deg},
    )


def test_catalog_layout():
    cat = _catalog()
    assert cat.colnames == ["id", "ra", "dec", "flux_mean", "radius_median", "index_mean"]
    assert list(cat["id"]) == ["g1", "g2", "g3"]
    assert cat.meta["task"] == "sersic_galaxy"
    np.testing.assert_array_equal(cat["flux_mean"], _summary()["flux_mean"])


@pytest.mark.parametrize("suffix", [".fits", ".ecsv", ".fits.gz"])
def test_catalog_round_trip_keeps_values_units_and_ids(tmp_path, suffix):
    cat = _catalog()
    path = write_table(cat, tmp_path / f"cat{suffix}")
    back = QTable.read(path)
    assert back.colnames == cat.colnames
    assert [str(i) for i in back["id"]] == ["g1", "g2", "g3"]
    for name in ("ra", "dec", "flux_mean", "radius_median"):
        assert back[name].unit == cat[name].unit, name
        np.testing.assert_array_equal(back[name].value, cat[name].value)
    np.testing.assert_array_equal(np.asarray(back["index_mean"]), np.asarray(cat["index_mean"]))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_write_refuses_to_overwrite_and_unknown_suffixes(tmp_path):
    path = write_table(_catalog(), tmp_path / "cat.ecsv")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        write_table(_catalog()[:1], path)
    assert path.read_bytes() == before
    write_table(_catalog()[:1], path, overwrite=True)
    assert len(QTable.read(path)) == 1
    with pytest.raises(ValueError, match=r"expected a file name ending in one of"):
        table_format(tmp_path / "cat.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_table(_catalog(), tmp_path / "missing" / "cat.fits")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_table(_catalog(), tmp_path / "cat.fits")
    before = path.read_bytes()
    bad = _catalog()
    bad["obj"] = np.array([{"a": 1}, None, 3], dtype=object)  # FITS cannot store objects
    with pytest.raises((TypeError, ValueError)):
        write_table(bad, path, overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cat.fits"]


def test_catalog_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match=r"ids: expected 3 identifiers"):
        posterior_catalog(_summary(), ids=["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        posterior_catalog(_summary(), ids=["a", "a", "b"])
    with pytest.raises(ValueError, match=r"columns\['ra'\]: expected 3 values"):
        posterior_catalog(_summary(), columns={"ra": [1.0] * u.deg})
    with pytest.raises(ValueError, match="clashes"):
        posterior_catalog(_summary(), columns={"flux_mean": [1, 2, 3]})


def test_samples_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    samples = rng.normal(size=(3, 50, 2)).astype(np.float32)
    path = write_samples(
        tmp_path / "s.fits", samples, ["flux", "n"], units=[u.ct, None], ids=["a", "b", "c"]
    )
    back = read_samples(path)
    assert [str(i) for i in back["id"]] == ["a", "b", "c"]
    assert back["flux"].unit == u.ct
    np.testing.assert_array_equal(back["flux"].value, samples[:, :, 0])
    np.testing.assert_array_equal(np.asarray(back["n"]), samples[:, :, 1])
    with pytest.raises(ValueError, match=r"samples: expected shape \(n_obs, num_samples, 3\)"):
        write_samples(tmp_path / "t.fits", samples, ["a", "b", "c"])


def test_arviz_export_keeps_values_ids_and_units():
    rng = np.random.default_rng(2)
    batch = rng.normal(size=(3, 40, 2))
    idata = to_inference_data(batch, ["flux", "n"], units=[u.ct, None], ids=["a", "b", "c"])
    flux = idata.posterior["flux"]
    assert flux.dims == ("chain", "draw", "object")
    assert flux.shape == (1, 40, 3)
    assert list(idata.posterior["object"].values) == ["a", "b", "c"]
    np.testing.assert_array_equal(flux.values[0].T, batch[:, :, 0])
    assert flux.attrs["units"] == "ct"
    assert "units" not in idata.posterior["n"].attrs
    one = to_inference_data(batch[1], ["flux", "n"])
    assert one.posterior["n"].shape == (1, 40)
    np.testing.assert_array_equal(one.posterior["n"].values[0], batch[1, :, 1])
    with pytest.raises(ValueError, match=r"samples: expected shape"):
        to_inference_data(batch, ["flux"])


def test_arviz_missing_gives_an_install_hint(monkeypatch):
    real_import = builtins.__import__

    def no_arviz(name, *args, **kwargs):
        if name == "arviz":
            raise ImportError("No module named 'arviz'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "arviz", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_arviz)
    with pytest.raises(ImportError, match="pip install arviz"):
        to_inference_data(np.zeros((5, 1)), ["a"])
