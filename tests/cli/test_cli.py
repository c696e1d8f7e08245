"""The command line as a user runs it: train on a TOML file, infer a FITS field, calibrate.

One tiny Sérsic run is trained once for the module; the FITS image is written
here with a real TAN WCS. Bad input must give one line on stderr, exit status 1
and no output file. A training process killed with SIGKILL resumes with
``--resume`` and ends exactly where an uninterrupted run ends.
"""

import json
import os
import signal
import subprocess
import sys
import time

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable
from astropy.wcs import WCS

from astroprob import cli
from astroprob.tasks.sersic import PARAMETER_NAMES

TINY_SERSIC = """
[task]
name = "sersic_galaxy"
stamp_size = 32
pixel_scale = "0.15 arcsec"
psf_fwhm = "0.3 arcsec"
zero_point = "28 mag"
sky_level = "21 mag / arcsec2"

[simulation]
num_simulations = 100
seed = 3

[embedding]
features = 4
channels = [4]
hidden = 8

[density]
kind = "mdn"
num_components = 2
hidden_features = 8

[training]
batch_size = 50
max_epochs = 2
"""

STATS = ("mean", "std", "median", "q2.5", "q16", "q84", "q97.5")
UNITS = {"flux": u.ct, "half_light_radius": u.arcsec, "x0": u.arcsec, "y0": u.arcsec}


def _main(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _assert_one_line_error(status, err, command, *fragments):
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"astroprob {command}: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _field(path, shape=(64, 96), scale_arcsec=0.15, seed=0):
    """A FITS image with a TAN WCS, Gaussian blobs at three pixel positions, and the positions."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0.0, 5.0, shape).astype(np.float32)
    pix = np.array([[20.0, 20.0], [50.0, 40.0], [75.0, 30.0]])  # (x, y), 0-based
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for x, y in pix:
        image += 300.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    wcs.wcs.cdelt = [-scale_arcsec / 3600, scale_arcsec / 3600]
    fits.PrimaryHDU(image, header=wcs.to_header()).writeto(path)
    sky = wcs.pixel_to_world(pix[:, 0], pix[:, 1])
    return pix, sky


def _positions(path, sky, ids=("a", "b", "c")):
    table = QTable({"id": list(ids), "ra": sky.ra.to(u.deg), "dec": sky.dec.to(u.deg)})
    table.write(path)
    return table


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    config = folder / "tiny.toml"
    config.write_text(TINY_SERSIC)
    run_dir = folder / "run"
    assert cli.main(["train", str(config), "--out", str(run_dir), "--no-progress"]) == 0
    return folder, config, run_dir


def test_train_infer_calibrate_end_to_end(run, tmp_path, capsys):
    folder, _, run_dir = run
    for name in ("run.toml", "config.json", "weights.msgpack", "checkpoint.msgpack"):
        assert (run_dir / name).is_file(), name
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["astroprob_version"]
    assert len(saved["history"]["validation_loss"]) == 2

    pix, sky = _field(tmp_path / "field.fits")
    _positions(tmp_path / "positions.ecsv", sky)
    catalog_path, samples_path = tmp_path / "catalog.fits", tmp_path / "samples.fits"
    status, out, err = _main(
        capsys,
        "infer", run_dir, tmp_path / "field.fits", "--out", catalog_path,
        "--positions", tmp_path / "positions.ecsv", "--num-samples", 200,
        "--samples", samples_path,
    )  # fmt: skip
    assert status == 0, err
    assert f"wrote {catalog_path} (3 rows)" in out

    catalog = QTable.read(catalog_path)
    assert len(catalog) == 3
    expected = ["id", "image", "ra", "dec", "x", "y"]
    expected += [f"{p}_{s}" for p in PARAMETER_NAMES for s in STATS]
    assert catalog.colnames == expected
    assert [str(i) for i in catalog["id"]] == ["a", "b", "c"]
    assert catalog["ra"].unit == u.deg
    assert catalog["x"].unit == u.pix
    np.testing.assert_allclose(catalog["ra"].to_value(u.deg), sky.ra.deg, rtol=0, atol=1e-10)
    np.testing.assert_allclose(catalog["dec"].to_value(u.deg), sky.dec.deg, rtol=0, atol=1e-10)
    np.testing.assert_allclose(catalog["x"].value, pix[:, 0], atol=1e-6)
    np.testing.assert_allclose(catalog["y"].value, pix[:, 1], atol=1e-6)
    for name, unit in UNITS.items():
        for stat in STATS:
            assert catalog[f"{name}_{stat}"].unit == unit, (name, stat)
    assert not hasattr(catalog["sersic_n_mean"], "unit") or catalog["sersic_n_mean"].unit in (
        None,
        u.dimensionless_unscaled,
    )
    # Summaries are consistent with the stored samples: the median is the samples' median.
    samples = QTable.read(samples_path)
    assert samples["flux"].shape == (3, 200)
    assert samples["flux"].unit == u.ct
    np.testing.assert_allclose(
        np.median(samples["flux"].value, axis=1), catalog["flux_median"].value, rtol=1e-5
    )
    lo, hi = catalog["half_light_radius_q2.5"], catalog["half_light_radius_q97.5"]
    assert np.all(lo <= catalog["half_light_radius_median"])
    assert np.all(catalog["half_light_radius_median"] <= hi)

    report = tmp_path / "report.html"
    status, out, err = _main(
        capsys, "calibrate", run_dir, "--out", report,
        "--num-simulations", 100, "--num-samples", 100,
    )  # fmt: skip
    assert status == 0, err
    assert "OVERALL:" in out
    assert "half_light_radius" in out
    assert "data:image/png;base64," in report.read_text()


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(FileNotFoundError, match="expected a TOML run config"):
        cli.main(["train", str(missing), "--out", str(tmp_path / "run"), "--debug"])
    with pytest.raises(FileNotFoundError):
        cli.main(["--debug", "train", str(missing), "--out", str(tmp_path / "run")])


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("astroprob ")


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (("max_epochs = 2", "max_epochs = 2\nepochs = 3"), ["[training] unknown key 'epochs'"]),
        (("[density]", "[model]\n[density]"), ["unknown section [model]"]),
        (('psf_fwhm = "0.3 arcsec"', 'psf_fwhm = "0.3 arcsec"\npsf_size = 1'), ["psf_size"]),
        (
            ('pixel_scale = "0.15 arcsec"', 'pixel_scale = "0.15 ct"'),
            ["[task] pixel_scale", "expected units of arcsec", "0.15 ct"],
        ),
        (('pixel_scale = "0.15 arcsec"', "pixel_scale = 0.15"), ["[task] pixel_scale"]),
        (("batch_size = 50", "batch_size = -5"), ["[training] batch_size"]),
        (("num_simulations = 100", "num_simulations = 1"), ["[simulation] num_simulations"]),
        (("hidden_features = 8", "hidden_featurez = 8"), ["[density]", "hidden_featurez"]),
        (('name = "sersic_galaxy"', 'name = "sersic"'), ["[task] name", "'sersic'"]),
        (("[density]", '[estimator]\nsymmetry = "C8"\n[density]'), ["[estimator]", "C8"]),
        (("[density]", '[estimator]\nensemble = "5"\n[density]'), ["[estimator] ensemble"]),
        (("[density]", "[estimator]\nbalance = -1.0\n[density]"), ["[estimator]", "balance"]),
        (
            ("[embedding]", '[embedding]\nkind = "equivariant"\nconvs_per_stage = 2'),
            ["[embedding]"],
        ),
        (("[embedding]", '[embedding]\nequivariant_outputs = "spin2"'), ["list of strings"]),
    ],
)
def test_bad_config_is_one_line_and_writes_nothing(tmp_path, capsys, change, fragments):
    config = tmp_path / "bad.toml"
    config.write_text(TINY_SERSIC.replace(*change))
    out = tmp_path / "run"
    status, _, err = _main(capsys, "train", config, "--out", out, "--no-progress")
    _assert_one_line_error(status, err, "train", str(config), *fragments)
    assert not out.exists()


def test_estimator_section_and_equivariant_embedding_build_the_npe():
    from astroprob.io.runs import RunConfig
    from astroprob.nn import EquivariantCNN

    text = TINY_SERSIC.replace(
        "[embedding]",
        '[estimator]\nensemble = 2\nbalance = 10\nsymmetry = "D4"\n\n'
        '[embedding]\nkind = "equivariant"\ngroup = "D4"\nrings = 2\ninput_rings = 3\n'
        'equivariant_outputs = ["spin2", "spin1"]',
    )
    config = RunConfig.from_text(text)
    npe = config.build_npe()
    assert (npe.ensemble, npe.balance, npe.symmetry) == (2, 10.0, "D4")
    embedding = npe._embedding
    assert isinstance(embedding, EquivariantCNN)
    assert embedding.group.name == "D4"
    assert (embedding.rings, embedding.input_rings) == (2, 3)
    assert [name for name, _ in embedding.output_slices] == ["invariant", "spin2", "spin1"]
    # The estimator options are part of what a resumed run must share.
    other = RunConfig.from_text(text.replace("ensemble = 2", "ensemble = 3"))
    assert not config.same_run(other)
    assert config.same_run(RunConfig.from_text(text))


def test_train_refuses_a_used_run_dir_and_a_different_config_on_resume(run, tmp_path, capsys):
    _, config, run_dir = run
    before = sorted(p.name for p in run_dir.iterdir())
    status, _, err = _main(capsys, "train", config, "--out", run_dir)
    _assert_one_line_error(status, err, "train", str(run_dir), "--resume")
    other = tmp_path / "other.toml"
    other.write_text(TINY_SERSIC.replace("max_epochs = 2", "max_epochs = 3"))
    status, _, err = _main(capsys, "train", other, "--out", run_dir, "--resume")
    _assert_one_line_error(status, err, "train", "differs from the config")
    assert sorted(p.name for p in run_dir.iterdir()) == before
    # Resuming a finished run with its own config does nothing and succeeds.
    status, out, _ = _main(capsys, "train", config, "--out", run_dir, "--resume")
    assert status == 0
    assert "already complete" in out


def test_bad_inference_input_is_one_line_and_writes_nothing(run, tmp_path, capsys):
    _, _, run_dir = run
    catalog = tmp_path / "catalog.fits"
    pix, sky = _field(tmp_path / "field.fits")

    status, _, err = _main(capsys, "infer", run_dir, tmp_path / "nope.fits", "--out", catalog)
    _assert_one_line_error(status, err, "infer", "nope.fits", "no such file")

    table_only = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(QTable({"a": [1, 2]}))]).writeto(table_only)
    status, _, err = _main(capsys, "infer", run_dir, table_only, "--out", catalog)
    _assert_one_line_error(status, err, "infer", "table.fits", "expected a 2-D image in HDU 0")

    # A whole field without --positions is not one stamp of the training shape.
    status, _, err = _main(capsys, "infer", run_dir, tmp_path / "field.fits", "--out", catalog)
    _assert_one_line_error(status, err, "infer", "expected a 32x32 stamp", "--positions")

    # The third position moved next to the edge: its stamp would leave the image.
    edge = tmp_path / "field.fits"
    wcs = WCS(fits.getheader(edge))
    moved = wcs.pixel_to_world(np.array([20.0, 50.0, 92.0]), np.array([20.0, 40.0, 30.0]))
    _positions(tmp_path / "edge.ecsv", moved)
    status, _, err = _main(
        capsys, "infer", run_dir, edge, "--out", catalog, "--positions", tmp_path / "edge.ecsv"
    )
    _assert_one_line_error(status, err, "infer", "position 2", "too near the edge")

    # Positions without units are refused rather than guessed.
    QTable({"ra": [150.1], "dec": [2.2]}).write(tmp_path / "nounits.ecsv")
    status, _, err = _main(
        capsys, "infer", run_dir, edge, "--out", catalog, "--positions", tmp_path / "nounits.ecsv"
    )
    _assert_one_line_error(status, err, "infer", "column 'ra'", "angle units")

    # An image at another pixel scale than the training images.
    _field(tmp_path / "coarse.fits", scale_arcsec=0.3)
    status, _, err = _main(
        capsys, "infer", run_dir, tmp_path / "coarse.fits", "--out", catalog,
        "--positions", tmp_path / "edge.ecsv",
    )  # fmt: skip
    _assert_one_line_error(status, err, "infer", "pixel scale of 0.15 arcsec", "0.3 arcsec")
    assert not catalog.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


TWO_MOONS = """
[task]
name = "two_moons"

[simulation]
num_simulations = 500

[density]
hidden_features = 16
num_transforms = 2

[training]
batch_size = 20
max_epochs = 25
patience = 25
"""


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
def test_a_checkpoint_from_before_theta_scaling_does_not_resume(run, tmp_path, capsys):
    """Checkpoints hold weights, not the standardisation: an old one must not resume."""
    import shutil

    from astroprob.inference import _checkpoint

    _, config, finished = run
    run_dir = tmp_path / "interrupted"
    shutil.copytree(finished, run_dir)
    for name in ("config.json", "weights.msgpack"):  # as if killed before saving
        (run_dir / name).unlink()
    path = run_dir / "checkpoint.msgpack"
    arrays, scalars = _checkpoint.decode_checkpoint(path.read_bytes(), source=str(path))
    assert scalars["settings"]["theta_scaling"] == "auto"
    del scalars["settings"]["theta_scaling"]
    path.write_bytes(_checkpoint.encode_checkpoint(arrays, scalars))
    status, _, err = _main(capsys, "train", config, "--out", run_dir, "--resume")
    _assert_one_line_error(status, err, "train", "theta_scaling", "older astroprob")


@pytest.mark.slow  # ~40 s of CPU: a subprocess (JAX import) and three compiled trainings
def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path, capsys):
    config = tmp_path / "moons.toml"
    config.write_text(TWO_MOONS)
    run_dir = tmp_path / "run"
    checkpoint = run_dir / "checkpoint.msgpack"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "astroprob.cli", "train", str(config), "--out", str(run_dir)]
    process = subprocess.Popen(
        [*cmd, "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        _, stderr = process.communicate()
    assert process.returncode == -signal.SIGKILL, stderr.decode()
    assert not (run_dir / "config.json").exists(), "training ended before it was killed"

    status, out, err = _main(capsys, "train", config, "--out", run_dir, "--resume", "--no-progress")
    assert status == 0, err
    resumed_at = int(out.split("resuming after epoch ")[1].split()[0])
    assert 1 <= resumed_at < 25
    assert [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")] == []

    reference = tmp_path / "reference"
    status, _, err = _main(capsys, "train", config, "--out", reference, "--no-progress")
    assert status == 0, err
    resumed = json.loads((run_dir / "config.json").read_text())
    uninterrupted = json.loads((reference / "config.json").read_text())
    assert len(resumed["history"]["validation_loss"]) == 25
    assert resumed["history"]["validation_loss"] == uninterrupted["history"]["validation_loss"]
    assert resumed["weights_sha256"] == uninterrupted["weights_sha256"]
    # And the resumed run loads and samples like any other.
    from astroprob.io import load_run

    npe = load_run(run_dir)
    samples = np.asarray(npe.posterior(npe.task.observation(1)).sample(_key(), 10))
    assert samples.shape == (10, 2)
    assert np.isfinite(samples).all()


def _key():
    import jax

    return jax.random.key(0)


@pytest.mark.slow  # ~40 s of CPU; its parts (train_run, infer_images, calibrate) run above
def test_demo_tiny_writes_every_output(tmp_path, capsys):
    out = tmp_path / "demo"
    status, printed, err = _main(capsys, "demo", "--tiny", "--out", out)
    assert status == 0, err
    names = ["demo.toml", "run/config.json", "field.fits", "positions.ecsv", "catalog.fits"]
    names += ["samples.fits", "truth.ecsv", "corner.png", "report.html"]
    for name in names:
        assert (out / name).is_file(), name
        assert str(out / name.split("/")[0]) in printed
    catalog, truth = QTable.read(out / "catalog.fits"), QTable.read(out / "truth.ecsv")
    assert list(catalog["id"]) == list(truth["id"])
    assert len(catalog) == 2
    assert catalog["flux_mean"].unit == u.ct
    assert (out / "corner.png").read_bytes()[:4] == b"\x89PNG"
