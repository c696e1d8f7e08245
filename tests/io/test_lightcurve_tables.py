"""Light curves from an astropy Table (long format): the inverse of LightCurves.to_table."""

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable, vstack

from astroprob.io import lightcurves_from_table


def _table():
    rng = np.random.default_rng(0)
    rows = []
    for name, z, n in (("sn1", 0.05, 7), ("sn2", 0.1, 4)):
        mjd = np.sort(rng.uniform(55000, 55100, n))
        band = rng.choice(["r", "g"], n)
        flux = rng.normal(100, 20, n)
        err = rng.uniform(1, 5, n)
        rows.append(
            QTable(
                {
                    "id": [name] * n,
                    "mjd": mjd * u.day,
                    "band": band,
                    "flux": flux,
                    "flux_err": err,
                    "redshift": [z] * n,
                }
            )
        )
    return vstack(rows)


def test_round_trip_through_to_table():
    table = _table()
    lc = lightcurves_from_table(table)
    assert lc.ids == ("sn1", "sn2")
    assert lc.bands == ("g", "r")  # blue to red, whatever the row order
    np.testing.assert_array_equal(lc.redshift, [0.05, 0.1])
    assert lc.mask.sum() == len(table)
    for i, name in enumerate(lc.ids):
        back = lc.to_table(i)
        rows = table[table["id"] == name]
        order = np.argsort(rows["mjd"].value, kind="stable")
        np.testing.assert_array_equal(back["mjd"].to_value(u.day), rows["mjd"].value[order])
        np.testing.assert_array_equal(back["flux"], np.asarray(rows["flux"])[order])
        np.testing.assert_array_equal(back["flux_err"], np.asarray(rows["flux_err"])[order])
        assert list(back["band"]) == list(np.asarray(rows["band"])[order])
    # ... and back again: the same arrays.
    again = lightcurves_from_table(
        vstack(
            [_with_id(lc.to_table(i), name) for i, name in enumerate(lc.ids)],
            metadata_conflicts="silent",
        )
    )
    np.testing.assert_array_equal(again.time, lc.time)
    np.testing.assert_array_equal(again.flux, lc.flux)
    np.testing.assert_array_equal(again.mask, lc.mask)


def _with_id(table, name):
    table["id"] = [name] * len(table)
    return table


def test_plain_mjd_and_band_selection():
    table = _table()
    table["mjd"] = table["mjd"].value
    lc = lightcurves_from_table(table, bands=["r"], max_points=10)
    assert lc.bands == ("r",)
    assert lc.time.shape == (2, 1, 10)
    assert lc.mask.sum() == int(np.sum(table["band"] == "r"))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.remove_column("flux_err"), r"missing \['flux_err'\]"),
        (lambda t: t.__setitem__("mjd", t["mjd"].value * u.m), "expected a time unit"),
        (lambda t: t["flux_err"].__setitem__(0, 0.0), "FLUXCALERR <= 0"),
        (lambda t: t["redshift"].__setitem__(0, 0.3), "several redshifts"),
        (lambda t: t["flux"].__setitem__(1, np.nan), "non-finite FLUXCAL"),
    ],
)
def test_bad_tables_raise(edit, match):
    table = _table()
    edit(table)
    with pytest.raises(ValueError, match=match):
        lightcurves_from_table(table)


def test_flux_units_are_converted_or_rejected():
    def table(flux_unit):
        return QTable(
            {
                "mjd": [1.0, 2.0, 3.0] * u.day,
                "band": ["g", "g", "r"],
                "flux": [100.0, 200.0, 300.0] * flux_unit,
                "flux_err": [10.0, 10.0, 10.0] * flux_unit,
            }
        )

    plain = lightcurves_from_table(table(u.dimensionless_unscaled), zero_point=27.5)
    # One FLUXCAL unit (zero point 27.5) is 10^(-0.4 (27.5 - 8.9)) Jy = 36.31 nJy.
    one_unit_njy = 10 ** (-0.4 * (27.5 - 8.9)) * 1e9
    scaled = lightcurves_from_table(table(one_unit_njy * u.nJy), zero_point=27.5)
    assert np.allclose(np.asarray(scaled.flux), np.asarray(plain.flux), rtol=1e-6)
    with pytest.raises(ValueError, match="column 'flux'.*spectral flux density"):
        lightcurves_from_table(table(u.m), zero_point=27.5)
