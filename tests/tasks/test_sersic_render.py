"""Rendering of `SersicGalaxy`: conventions, symmetries, differentiability, and GalSim agreement."""

import logging
from pathlib import Path

import astropy.units as u
import galsim
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.io import fits

from astroprob.tasks.sersic import GaussianPSF, ImagePSF, MoffatPSF, SersicGalaxy

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "galsim_cosmos_example"

# flux [ct], half_light_radius [arcsec], n, e1, e2, x0 [arcsec], y0 [arcsec]
GALAXY = np.array([1000.0, 0.3, 2.5, 0.2, 0.25, 0.0, 0.0], np.float32)


@pytest.fixture(scope="module")
def task():
    return SersicGalaxy(stamp_size=48, pixel_scale=0.1 * u.arcsec)


def _moments(image):
    y, x = np.mgrid[: image.shape[0], : image.shape[1]]
    w = np.asarray(image, np.float64)
    cx, cy = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    ixx = (w * (x - cx) ** 2).sum() / w.sum()
    iyy = (w * (y - cy) ** 2).sum() / w.sum()
    ixy = (w * (x - cx) * (y - cy)).sum() / w.sum()
    return cx, cy, ixx, iyy, ixy


def test_flux_is_conserved_for_a_compact_galaxy(task):
    theta = GALAXY.copy()
    theta[1:5] = [0.2, 1.0, 0.0, 0.0]
    image = np.asarray(task.render(theta))
    assert image.shape == (48, 48)
    assert image.sum() == pytest.approx(1000.0, rel=2e-4)
    assert image.min() > -1e-3 * image.max()


def test_orientation_convention(task):
    # e1 > 0: major axis along x (columns); e2 > 0: along the diagonal x = y.
    along_x = np.asarray(task.render(np.array([1e3, 0.4, 1.0, 0.3, 0.0, 0, 0], np.float32)))
    _, _, ixx, iyy, ixy = _moments(along_x)
    assert ixx > 2 * iyy
    assert abs(ixy) < 1e-3 * ixx
    diagonal = np.asarray(task.render(np.array([1e3, 0.4, 1.0, 0.0, 0.3, 0, 0], np.float32)))
    _, _, ixx, iyy, ixy = _moments(diagonal)
    assert ixy > 0.3 * ixx
    assert ixx == pytest.approx(iyy, rel=1e-3)


def test_centroid_offset_convention(task):
    # x0 moves the galaxy along +x (columns), y0 along +y (rows); the centre of an
    # even stamp lies between pixels 23 and 24.
    theta = np.array([1e3, 0.15, 1.0, 0.1, 0.2, 0.25, -0.1], np.float32)  # compact
    cx, cy, *_ = _moments(np.asarray(task.render(theta)))
    assert cx == pytest.approx(23.5 + 2.5, abs=0.01)
    assert cy == pytest.approx(23.5 - 1.0, abs=0.01)


def test_rotating_by_90_degrees_rotates_the_image(task):
    # β -> β + 90° is (e1, e2) -> (-e1, -e2): counter-clockwise with origin="lower",
    # which is numpy's rot90 with k=-1.
    image = np.asarray(task.render(GALAXY))
    rotated = GALAXY.copy()
    rotated[3:5] *= -1
    np.testing.assert_allclose(
        np.asarray(task.render(rotated)), np.rot90(image, k=-1), atol=2e-6 * image.max()
    )


def test_rotation_direction_with_an_off_centre_galaxy(task):
    # A centred ellipse is symmetric under 180°, so both rot90 directions agree on it;
    # off centre, a +90° turn also moves (x0, y0) to (-y0, x0).
    theta = GALAXY.copy()
    theta[5:] = [0.2, 0.05]
    image = np.asarray(task.render(theta))
    turned_theta = theta.copy()
    turned_theta[3:5] *= -1
    turned_theta[5:] = [-0.05, 0.2]
    turned = np.asarray(task.render(turned_theta))
    peak = image.max()
    np.testing.assert_allclose(turned, np.rot90(image, k=-1), atol=2e-6 * peak)
    # Negative control: the other direction is a different image.
    assert np.abs(turned - np.rot90(image, k=1)).max() > 0.05 * peak


def test_transposing_swaps_x_and_y(task):
    # Mirroring about x = y maps β to 90° - β: (e1, e2, x0, y0) -> (-e1, e2, y0, x0).
    theta = np.array([800.0, 0.35, 1.7, 0.3, -0.2, 0.07, -0.12], np.float32)
    mirrored = np.array([800.0, 0.35, 1.7, -0.3, -0.2, -0.12, 0.07], np.float32)
    a, b = np.asarray(task.render(theta)), np.asarray(task.render(mirrored))
    np.testing.assert_allclose(b, a.T, atol=2e-6 * a.max())


def test_shift_by_one_pixel_is_a_roll(task):
    image = np.asarray(task.render(GALAXY))
    shifted = GALAXY.copy()
    shifted[5] = 0.1  # one pixel along +x
    moved = np.asarray(task.render(shifted))
    np.testing.assert_allclose(moved[:, 1:], image[:, :-1], atol=2e-6 * image.max())


def test_batches_jit_vmap_and_grad(task):
    theta = np.stack([GALAXY, GALAXY * np.array([2, 1.5, 1, 0, -1, 0, 1], np.float32)])
    batch = np.asarray(task.render(theta))
    assert batch.shape == (2, 48, 48)
    np.testing.assert_allclose(batch[0], np.asarray(task.render(GALAXY)), rtol=1e-6, atol=1e-6)
    assert task.render(theta.reshape(1, 2, 7)).shape == (1, 2, 48, 48)

    jitted = jax.jit(jax.vmap(task.render))(jnp.asarray(theta))
    np.testing.assert_allclose(np.asarray(jitted), batch, atol=1e-3)

    target = batch[0] + 1.0

    def loss(t):
        return jnp.sum((task.render(t) - target) ** 2)

    grad = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(GALAXY)))
    assert np.all(np.isfinite(grad))
    assert np.all(grad != 0)
    # Finite differences in float32 with steps that keep parameters in range.
    steps = np.array([1.0, 1e-3, 1e-2, 1e-3, 1e-3, 1e-3, 1e-3], np.float32)
    for j, step in enumerate(steps):
        up, down = GALAXY.copy(), GALAXY.copy()
        up[j] += step
        down[j] -= step
        fd = (float(loss(jnp.asarray(up))) - float(loss(jnp.asarray(down)))) / (2 * step)
        assert grad[j] == pytest.approx(fd, rel=0.05, abs=1e-2 * np.abs(grad).max()), j


def test_second_call_with_the_same_shape_does_not_recompile(task, caplog):
    theta = np.stack([GALAXY] * 3)
    task.render(theta)
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        task.render(theta * np.array([1.1, 1, 1, 1, 1, 1, 1], np.float32))
    assert not [r for r in caplog.records if "ompil" in r.getMessage()]


def test_narrow_psf_gets_more_aliases_and_a_point_like_psf_is_refused():
    wide = SersicGalaxy(stamp_size=32, psf=GaussianPSF(0.3 * u.arcsec))
    narrow = SersicGalaxy(stamp_size=32, psf=GaussianPSF(0.08 * u.arcsec))
    assert narrow.layout.oversampling > wide.layout.oversampling >= 1
    with pytest.raises(ValueError, match="psf: its transform"):
        SersicGalaxy(stamp_size=32, psf=GaussianPSF(0.005 * u.arcsec))


def test_moffat_transform_matches_galsim():
    for beta in (1.5, 2.5, 4.8):
        ours = MoffatPSF(0.4 * u.arcsec, beta=beta)
        ref = galsim.Moffat(beta=beta, fwhm=0.4)
        k = np.array([0.0, 0.5, 2.0, 5.0, 12.0, 30.0])
        got = ours.transfer(k, np.zeros_like(k)).real
        expected = np.array([ref.kValue(kk, 0.0).real for kk in k])
        np.testing.assert_allclose(got, expected, atol=2e-6)


# ----------------------------------------------------------------------------- GalSim
def _galsim_images(galsim, theta, psf, shape, scale, *, method="auto"):
    out = []
    for flux, radius, n, e1, e2, x0, y0 in np.asarray(theta, np.float64):
        galaxy = galsim.Sersic(n=n, half_light_radius=radius, flux=flux).shear(g1=e1, g2=e2)
        profile = galsim.Convolve(galaxy.shift(x0, y0), psf)
        out.append(profile.drawImage(nx=shape[1], ny=shape[0], scale=scale, method=method).array)
    return np.stack(out)


def _relative_l1(ours, ref, theta):
    return np.abs(np.asarray(ours, np.float64) - ref).sum(axis=(1, 2)) / np.asarray(theta)[:, 0]


def test_matches_galsim_on_prior_draws(task):
    theta = np.asarray(task.sample_prior(jax.random.key(2024), 24))
    ref = _galsim_images(galsim, theta, galsim.Moffat(beta=3.0, fwhm=0.2), (48, 48), 0.1)
    err = _relative_l1(task.render(theta), ref, theta)
    assert np.median(err) < 5e-4
    assert err.max() < 5e-3


@pytest.mark.parametrize(
    ("shape", "psf_kind"), [((32, 48), "gaussian"), ((33, 33), "moffat")], ids=["rect", "odd"]
)
def test_matches_galsim_for_other_shapes_and_psfs(shape, psf_kind):
    if psf_kind == "gaussian":
        psf, ref_psf = GaussianPSF(0.25 * u.arcsec), galsim.Gaussian(fwhm=0.25)
    else:
        psf, ref_psf = MoffatPSF(0.2 * u.arcsec, beta=2.5), galsim.Moffat(beta=2.5, fwhm=0.2)
    task = SersicGalaxy(stamp_size=shape, pixel_scale=0.12 * u.arcsec, psf=psf)
    theta = np.array(task.sample_prior(jax.random.key(7), 6))
    theta[:, 5:] = [[0.05, -0.09]] * 6  # off-centre, so that a swapped axis shows
    ref = _galsim_images(galsim, theta, ref_psf, shape, 0.12)
    err = _relative_l1(task.render(theta), ref, theta)
    assert err.max() < 5e-3


def test_matches_galsim_with_a_real_cosmos_psf_image():
    path = DATA / "real_galaxy_PSF_images.fits"
    assert path.is_file(), f"{path} is missing: the shared data must be next to the repository"
    psf_image = fits.getdata(path, 0).astype(np.float64)
    ref_psf = galsim.InterpolatedImage(galsim.Image(psf_image / psf_image.sum(), scale=0.03))
    task = SersicGalaxy(stamp_size=48, psf=ImagePSF(psf_image, 0.03 * u.arcsec))
    assert task.layout.oversampling == 4  # the PSF's band limit, 0.1" / 0.03" rounded up
    theta = np.asarray(task.sample_prior(jax.random.key(5), 6))
    ref = _galsim_images(galsim, theta, ref_psf, (48, 48), 0.1)
    err = _relative_l1(task.render(theta), ref, theta)
    # GalSim interpolates the PSF with a quintic kernel, we with a sinc: close, not equal.
    assert np.median(err) < 5e-4
    assert err.max() < 2e-3


@pytest.mark.slow
@pytest.mark.parametrize("psf_kind", ["moffat", "gaussian"])
def test_matches_galsim_on_200_prior_draws(psf_kind):
    if psf_kind == "moffat":
        task = SersicGalaxy()
        ref_psf = galsim.Moffat(beta=3.0, fwhm=0.2)
    else:
        task = SersicGalaxy(psf=GaussianPSF(0.2 * u.arcsec))
        ref_psf = galsim.Gaussian(fwhm=0.2)
    theta = np.asarray(task.sample_prior(jax.random.key(0), 200))
    ref = _galsim_images(galsim, theta, ref_psf, (48, 48), 0.1)
    err = _relative_l1(task.render(theta), ref, theta)
    assert np.median(err) <= 5e-3  # issue target: median <= 0.5 %
    assert err.max() <= 2e-2  # issue target: worst <= 2 %
    assert np.median(err) < 1e-4
    assert err.max() < 5e-3
