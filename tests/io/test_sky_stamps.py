"""Stamps around sky positions: exact pixels through a real WCS, and clear refusals."""

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from astroprob.io import image_pixel_scale, read_fits_image, sky_stamps


def _wcs(shape, scale_arcsec=0.15, rotation_deg=0.0):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [shape[1] / 2 + 0.3, shape[0] / 2 - 0.2]
    c, s = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
    wcs.wcs.cd = scale_arcsec / 3600 * np.array([[-c, s], [s, c]])
    return wcs


@pytest.fixture
def image(tmp_path):
    shape = (60, 80)
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)  # every pixel distinct
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(data, header=_wcs(shape, rotation_deg=30).to_header())]
    ).writeto(tmp_path / "img.fits")
    return read_fits_image(tmp_path / "img.fits", hdu=1), data


def test_stamps_hold_the_pixels_around_each_position(image):
    img, data = image
    assert img.wcs is not None
    np.testing.assert_allclose(image_pixel_scale(img).to_value(u.arcsec), 0.15, rtol=1e-9)
    pix = np.array([[20.0, 20.0], [47.4, 31.6], [60.5, 40.5]])  # (x, y)
    sky = img.wcs.pixel_to_world(pix[:, 0], pix[:, 1])
    cut = sky_stamps(img, sky, (16, 16), pixel_scale=0.15 * u.arcsec)
    assert cut.data.shape == (3, 16, 16)
    assert cut.data.dtype == np.float32
    np.testing.assert_allclose(cut.x, pix[:, 0], atol=1e-8)
    np.testing.assert_allclose(cut.y, pix[:, 1], atol=1e-8)
    for k, (x, y) in enumerate(pix):
        # The requested position lies offset from the stamp centre (7.5, 7.5) by (dx, dy).
        x0 = round(x - 7.5 - cut.offset_x[k])
        y0 = round(y - 7.5 - cut.offset_y[k])
        np.testing.assert_array_equal(cut.data[k], data[y0 : y0 + 16, x0 : x0 + 16])
        assert abs(cut.offset_x[k]) <= 0.5
        assert abs(cut.offset_y[k]) <= 0.5
    # A position half-way between pixels sits exactly at the centre of an even stamp.
    assert cut.offset_x[2] == pytest.approx(0.0, abs=1e-8)
    assert cut.offset_y[2] == pytest.approx(0.0, abs=1e-8)


def test_a_scalar_position_gives_one_stamp(image):
    img, _ = image
    cut = sky_stamps(img, img.wcs.pixel_to_world(40.0, 30.0), (10, 12))
    assert cut.data.shape == (1, 10, 12)


def test_positions_off_the_image_or_at_the_wrong_scale_are_refused(image):
    img, _ = image
    near_edge = img.wcs.pixel_to_world(np.array([40.0, 3.0]), np.array([30.0, 30.0]))
    with pytest.raises(ValueError, match=r"position 1 .* too near the edge"):
        sky_stamps(img, near_edge, (16, 16))
    far = SkyCoord(10 * u.deg, -40 * u.deg)
    with pytest.raises(ValueError, match=r"position 0 .* outside"):
        sky_stamps(img, far, (16, 16))
    with pytest.raises(ValueError, match=r"expected a pixel scale of 0.2 arcsec.*0.15 arcsec"):
        sky_stamps(img, img.wcs.pixel_to_world(40.0, 30.0), (16, 16), pixel_scale=0.2 * u.arcsec)
    with pytest.raises(TypeError):  # checked by the function, or by jaxtyping under pytest
        sky_stamps(img, (150.1, 2.2), (16, 16))


def test_an_image_without_wcs_cannot_be_cut_by_sky_position(tmp_path):
    fits.PrimaryHDU(np.zeros((20, 20), np.float32)).writeto(tmp_path / "plain.fits")
    img = read_fits_image(tmp_path / "plain.fits")
    assert img.wcs is None
    with pytest.raises(ValueError, match="expected a celestial WCS"):
        sky_stamps(img, SkyCoord(1 * u.deg, 1 * u.deg), (8, 8))


def test_non_square_pixels_are_refused(tmp_path):
    wcs = _wcs((20, 20))
    wcs.wcs.cd = np.diag([-0.1, 0.2]) / 3600
    fits.PrimaryHDU(np.zeros((20, 20), np.float32), header=wcs.to_header()).writeto(
        tmp_path / "rect.fits"
    )
    with pytest.raises(ValueError, match="expected square pixels"):
        image_pixel_scale(read_fits_image(tmp_path / "rect.fits"))
