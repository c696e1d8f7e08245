"""`astroprob train` and `astroprob infer` on supernova light curves (SNANA text files)."""

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from astroprob import cli

TINY_SUPERNOVA = """
[task]
name = "supernova_light_curves"
sn_type = "Ia"
reference_band = "g"

[task.survey]
bands = ["g", "r"]
max_points = 8
time_range = [-30, 60]

[simulation]
num_simulations = 200

[embedding]
features = 8
hidden = 16
num_heads = 2

[density]
kind = "mdn"
num_components = 2
hidden_features = 8

[training]
batch_size = 50
max_epochs = 2
"""


def _write_snana_text(folder, name, seed):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(-20, 50, 10))
    bands = np.where(np.arange(10) % 2 == 0, "g", "r")
    flux = 1000 * np.exp(-((t - 5) ** 2) / 300) + rng.normal(0, 10, 10)
    lines = [f"SNID: {name}", "REDSHIFT_FINAL: 0.05 +- 0.001", "NOBS: 10"]
    lines += ["VARLIST: MJD FLT FLUXCAL FLUXCALERR"]
    lines += [
        f"OBS: {55000 + a:.3f} {b} {f:.3f} 10.0" for a, b, f in zip(t, bands, flux, strict=True)
    ]
    (folder / f"{name}.dat").write_text("\n".join(lines) + "\nEND:\n")
    return 55000 + np.round(t[np.argmax(flux)], 3)


@pytest.mark.slow  # ~35 s of CPU: a light-curve simulator and encoder compiled twice
def test_train_and_infer_light_curves(tmp_path, capsys):
    config = tmp_path / "sn.toml"
    config.write_text(TINY_SUPERNOVA)
    run = tmp_path / "run"
    assert cli.main(["train", str(config), "--out", str(run), "--no-progress"]) == 0
    peaks = [_write_snana_text(tmp_path, name, k) for k, name in enumerate(["SN1", "SN2"])]
    out = tmp_path / "cat.ecsv"
    inputs = [str(tmp_path / "SN1.dat"), str(tmp_path / "SN2.dat")]
    status = cli.main(["infer", str(run), *inputs, "--out", str(out), "--num-samples", "100"])
    assert status == 0, capsys.readouterr().err
    catalog = QTable.read(out)
    assert list(catalog["id"]) == ["SN1", "SN2"]
    assert catalog.colnames[:3] == ["id", "redshift", "t_ref"]
    np.testing.assert_allclose(catalog["redshift"], [0.05, 0.05])
    assert catalog["t_ref"].unit == u.day
    np.testing.assert_allclose(catalog["t_ref"].value, peaks, atol=1e-6)  # brightest point
    assert catalog["peak_mag_median"].unit == u.mag
    assert catalog["tau_rise_mean"].unit == u.day

    capsys.readouterr()
    status = cli.main(
        ["infer", str(run), *inputs, "--out", str(tmp_path / "x.fits"), "--positions", "p.ecsv"]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("astroprob infer: error: positions: light curves take no --positions")
    assert not (tmp_path / "x.fits").exists()


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (("max_points = 8", "max_points = 8\ncadence = 3"), ["[task]", "cadence"]),
        (('sn_type = "Ia"', 'sn_type = "Iax"'), ["[task]", "Iax"]),
        (("time_range = [-30, 60]", "time_range = [-30]"), ["[task]", "time_range"]),
        (("num_heads = 2", "channels = [4]"), ["[embedding]", "channels"]),
    ],
)
def test_bad_light_curve_config_is_one_line_and_writes_nothing(tmp_path, capsys, change, fragments):
    config = tmp_path / "bad.toml"
    config.write_text(TINY_SUPERNOVA.replace(*change))
    status = cli.main(["train", str(config), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 1
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"astroprob train: error: {config}")
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not (tmp_path / "run").exists()
