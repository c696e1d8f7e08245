"""FITS image and real-galaxy catalogue loading: conventions on real data, and bad files."""

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from astroprob.io import cutout, read_fits_image, read_real_galaxy_catalog

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "galsim_cosmos_example"
REAL = DATA / "tests_real_comparison"


@pytest.fixture
def real_data():
    """The shared COSMOS/AEGIS stamps; missing data fails the test instead of skipping it."""
    assert REAL.is_dir(), f"{REAL} is missing: the shared data must be next to the repository"


def _moments_angle(image, noise_sigma):
    """Position angle (degrees, from +x = columns towards +y = rows) of the light above 3σ."""
    w = np.where(image > 3 * noise_sigma, image, 0.0).astype(np.float64)
    y, x = np.mgrid[: image.shape[0], : image.shape[1]]
    cx, cy = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    ixx = (w * (x - cx) ** 2).sum()
    iyy = (w * (y - cy) ** 2).sum()
    ixy = (w * (x - cx) * (y - cy)).sum()
    return np.degrees(0.5 * np.arctan2(2 * ixy, ixx - iyy))


@pytest.mark.usefixtures("real_data")
def test_real_cosmos_stamp_reads_in_the_simulator_convention():
    image = read_fits_image(REAL / "test_images.fits", 0)
    raw = fits.getdata(REAL / "test_images.fits", 0)
    assert image.data.shape == (197, 67) == raw.shape  # (height, width) = (NAXIS2, NAXIS1)
    assert image.header["NAXIS1"] == 67
    assert image.data.dtype == np.float32
    np.testing.assert_array_equal(image.data, raw.astype(np.float32))  # no flip, no transpose
    assert not image.data.flags.writeable
    # The galaxy is elongated along y (rows) at the position angle the COSMOS Sérsic fit
    # gives (phi = 1.449 rad = 83°, counter-clockwise from +x), not its mirror image.
    fits_table = Table.read(DATA / "real_galaxy_catalog_23.5_example_fits.fits")
    row = list(fits_table["IDENT"]).index(100533)
    phi = np.degrees(fits_table["sersicfit"][row][7])
    angle = _moments_angle(image.data, np.sqrt(8.2e-6))
    assert abs(angle - phi) < 5
    assert abs(angle + phi) > 150  # the mirrored convention would give -83°


@pytest.mark.usefixtures("real_data")
def test_real_galaxy_catalogues_load_all_stamps():
    cosmos = read_real_galaxy_catalog(REAL / "test_catalog.fits")
    assert [s.ident for s in cosmos] == [100533, 100533]
    real = cosmos[0]  # row 1 points at GalSim's synthetic test images
    assert real.image.shape == (197, 67)
    assert real.psf.shape == (39, 39)
    assert real.pixel_scale == 0.03 * u.arcsec
    assert real.noise_variance == pytest.approx(8.2251e-6, rel=1e-4)
    assert real.band == "F814W"
    assert real.magnitude == pytest.approx(20.322, abs=1e-3)
    for band in ("F606w", "F814w"):
        stamps = read_real_galaxy_catalog(REAL / f"AEGIS_{band}_catalog.fits")
        assert [s.ident for s in stamps] == [23409, 14886, 9024, 17038, 24216]
        for stamp in stamps:
            assert stamp.image.ndim == 2
            assert min(stamp.image.shape) >= 39
            assert stamp.psf.shape == (20, 20)
            assert np.all(np.isfinite(stamp.image))
            assert stamp.pixel_scale == 0.03 * u.arcsec
            assert stamp.noise_variance > 0
            # The galaxy sits near the stamp centre and is brighter than the noise.
            peak = np.unravel_index(np.argmax(stamp.image), stamp.image.shape)
            centre = (np.array(stamp.image.shape) - 1) / 2
            assert np.all(np.abs(np.array(peak) - centre) < 0.25 * np.array(stamp.image.shape))
            assert stamp.image.max() > 5 * np.sqrt(stamp.noise_variance)


def test_cutout_centres_and_reports_offsets():
    image = np.arange(11 * 9, dtype=float).reshape(11, 9)
    odd = cutout(image, (5, 3))
    assert odd.offset == (0.0, 0.0)
    np.testing.assert_array_equal(odd.data, image[3:8, 3:6])
    even = cutout(image, (4, 4), center=(5, 4))
    assert even.offset == (-0.5, -0.5)  # pixel (5, 4) lies half a pixel before the centre
    np.testing.assert_array_equal(even.data, image[4:8, 3:7])
    with pytest.raises(ValueError, match="center: a"):
        cutout(image, (5, 5), center=(0, 0))
    with pytest.raises(ValueError, match="shape: expected two positive integers"):
        cutout(image, (20, 3))
    with pytest.raises(ValueError, match="image: expected a 2-D array"):
        cutout(np.zeros(5), (1, 1))


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_fits_image(tmp_path / "missing.fits")
    text = tmp_path / "not_fits.fits"
    text.write_text("this is not a FITS file\n")
    with pytest.raises(ValueError, match="not a readable FITS file"):
        read_fits_image(text)
    truncated = tmp_path / "truncated.fits"
    fits.PrimaryHDU(np.ones((10, 10), np.float32)).writeto(truncated)
    truncated.write_bytes(truncated.read_bytes()[:3000])
    with pytest.raises(ValueError, match="truncated.fits"):
        read_fits_image(truncated)

    good = tmp_path / "good.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(np.ones((4, 6), np.float32)),
            fits.ImageHDU(np.ones((2, 3, 4), np.float32)),
            fits.BinTableHDU(Table({"a": [1, 2]})),
        ]
    ).writeto(good)
    assert read_fits_image(good).data.shape == (4, 6)
    with pytest.raises(ValueError, match="hdu: expected 0 to 2"):
        read_fits_image(good, 3)
    with pytest.raises(ValueError, match="expected a 2-D image in HDU 1"):
        read_fits_image(good, 1)
    with pytest.raises(ValueError, match="expected a 2-D image in HDU 2"):
        read_fits_image(good, 2)

    nan = tmp_path / "nan.fits"
    data = np.ones((5, 5), np.float32)
    data[2, 2] = np.nan
    fits.PrimaryHDU(data).writeto(nan)
    with pytest.raises(ValueError, match="1 NaN or inf pixels"):
        read_fits_image(nan)

    catalog = tmp_path / "catalog.fits"
    Table({"IDENT": [1], "GAL_FILENAME": ["good.fits"], "GAL_HDU": [0]}).write(catalog)
    with pytest.raises(ValueError, match=r"missing \['PSF_FILENAME'"):
        read_real_galaxy_catalog(catalog)
    with pytest.raises(ValueError, match="expected a FITS binary table"):
        read_real_galaxy_catalog(good.with_name("nan.fits"))
