"""A real COSMOS galaxy: its catalogue Sérsic fit, rendered by SersicGalaxy with its real PSF,
reproduces the real HST image; a rotated or mirrored galaxy does not."""

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table

from astroprob.io import cutout, read_real_galaxy_catalog
from astroprob.tasks.sersic import ImagePSF, SersicGalaxy

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "galsim_cosmos_example"


@pytest.fixture(autouse=True)
def _shared_data():
    """Missing shared data fails these tests instead of skipping them."""
    assert DATA.is_dir(), f"{DATA} is missing: the shared data must be next to the repository"


def test_catalogue_fit_reproduces_the_real_cosmos_image():
    stamp = read_real_galaxy_catalog(DATA / "tests_real_comparison" / "test_catalog.fits")[0]
    fits = Table.read(DATA / "real_galaxy_catalog_23.5_example_fits.fits")
    row = list(fits["IDENT"]).index(stamp.ident)
    _, _, n, q, _, _, _, phi = fits["sersicfit"][row]
    flux, radius = fits["flux"][row][0], fits["hlr"][row][0]

    image = cutout(stamp.image, (128, 64)).data.astype(np.float64)
    sigma = np.sqrt(stamp.noise_variance)
    task = SersicGalaxy(
        stamp_size=(128, 64),
        pixel_scale=stamp.pixel_scale,
        psf=ImagePSF(stamp.psf, stamp.pixel_scale, includes_pixel=True),
        noise="gaussian",
        sky_level=0 * u.ct,
        read_noise=sigma * u.ct,
    )
    weights = np.where(image > 3 * sigma, image, 0.0)
    rows, cols = np.mgrid[:128, :64]
    x0 = ((weights * cols).sum() / weights.sum() - 31.5) * u.pix
    y0 = ((weights * rows).sum() / weights.sum() - 63.5) * u.pix

    def chi2(angle):
        theta = task.make_theta(
            flux=flux * u.ct,
            half_light_radius=radius * u.arcsec,
            sersic_n=float(n),
            axis_ratio=float(q),
            position_angle=angle * u.rad,
            x0=x0,
            y0=y0,
        )
        model = np.asarray(task.render(theta), np.float64)
        return np.mean((image - model) ** 2) / stamp.noise_variance, model

    best, model = chi2(phi)
    assert np.corrcoef(image.ravel(), model.ravel())[0, 1] > 0.95
    assert np.abs(image - model).sum() / image.sum() < 0.3  # a real galaxy is not a perfect Sérsic
    rotated, _ = chi2(phi + np.pi / 2)
    mirrored, _ = chi2(-phi)
    assert best < 0.2 * rotated
    assert best < 0.6 * mirrored
