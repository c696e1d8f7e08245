"""`SersicGalaxy` as a Task: prior, noise, likelihood, units at the edge, and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import stats

import astroprob as ap
from astroprob.inference._support import SupportBijection
from astroprob.tasks._priors import EllipticityPrior, TruncatedLogNormal, TruncatedPowerLaw
from astroprob.tasks.sersic import (
    PARAMETER_NAMES,
    GaussianPSF,
    ImagePSF,
    MoffatPSF,
    SersicGalaxy,
    check_theta,
    cosmos_prior_constants,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "galsim_cosmos_example"
GALAXY = np.array([2000.0, 0.3, 1.5, 0.1, -0.2, 0.02, -0.03], np.float32)


NUM = 256  # one batch size for every simulation here: one compilation per task


@pytest.fixture(scope="module")
def task():
    return SersicGalaxy(stamp_size=32, pixel_scale=0.15 * u.arcsec)


@pytest.fixture(scope="module")
def gaussian_task():
    return SersicGalaxy(
        stamp_size=32,
        pixel_scale=0.15 * u.arcsec,
        noise="gaussian",
        sky_level=50 * u.ct,
        read_noise=5 * u.ct,
    )


def test_task_contract(task):
    assert isinstance(task, ap.tasks.Task)
    assert task.parameter_names == PARAMETER_NAMES
    assert task.observation_shape == (32, 32)
    assert task.parameter_units == (u.ct, u.arcsec, None, None, None, u.arcsec, u.arcsec)
    theta, x = task.simulate(jax.random.key(0), NUM)
    assert theta.shape == (NUM, 7)
    assert x.shape == (NUM, 32, 32)
    assert np.all(np.isfinite(np.asarray(x)))
    assert ap.tasks.SersicGalaxy is SersicGalaxy


def test_default_prior_is_inside_the_supported_region_and_bijective(task):
    theta = np.asarray(task.sample_prior(jax.random.key(1), NUM))
    check_theta(theta)  # raises if any draw is invalid
    assert theta[:, 2].min() >= 0.5
    assert theta[:, 2].max() <= 6.0
    assert theta[:, 1].min() >= 0.05
    assert theta[:, 1].max() <= 2.5
    bijection = SupportBijection(task.prior)
    assert bool(np.all(np.asarray(bijection.contains(jnp.asarray(theta)))))
    u_ = bijection.to_unconstrained(jnp.asarray(theta))
    back = np.asarray(bijection.to_constrained(u_))
    np.testing.assert_allclose(back, theta, rtol=2e-4, atol=2e-5)
    # log|det| agrees with autodiff on one point.
    point = u_[0]
    jac = jax.jit(jax.jacobian(bijection.to_constrained))(point)
    expected = np.linalg.slogdet(np.asarray(jac, np.float64))[1]
    assert float(bijection.log_abs_det_jacobian(point)) == pytest.approx(expected, abs=1e-3)
    # Outside the support: a draw with |e| > 1 is not contained.
    bad = theta[:1].copy()
    bad[0, 3:5] = [0.9, 0.9]
    assert not bool(bijection.contains(jnp.asarray(bad))[0])


def test_default_prior_follows_the_cosmos_fit(task):
    constants = cosmos_prior_constants()
    theta = np.asarray(task.sample_prior(jax.random.key(2), 16 * NUM), np.float64)
    index = constants["sersic_n"]
    mu, sigma = index["log_mean"], index["log_std"]
    a, b = (np.log(index["low"]) - mu) / sigma, (np.log(index["high"]) - mu) / sigma
    expected = stats.truncnorm.ppf([0.1, 0.5, 0.9], a, b, loc=mu, scale=sigma)
    np.testing.assert_allclose(
        np.quantile(np.log(theta[:, 2]), [0.1, 0.5, 0.9]), expected, atol=0.05
    )
    e_sq = theta[:, 3] ** 2 + theta[:, 4] ** 2
    a, b = constants["ellipticity"]["a"], constants["ellipticity"]["b"]
    assert e_sq.mean() == pytest.approx(a / (a + b), rel=0.05)
    # Magnitudes from the flux power law: bright galaxies are rare, faint common.
    mag = 30.0 - 2.5 * np.log10(theta[:, 0])
    assert mag.min() >= 16.5 - 1e-3
    assert mag.max() <= 22.5 + 1e-3
    assert np.mean(mag > 21.5) > 0.5


def test_prior_densities_integrate_to_one():
    grid = np.linspace(-0.999, 0.999, 301)
    g1, g2 = np.meshgrid(grid, grid)
    inside = g1**2 + g2**2 < 1
    points = jnp.asarray(np.stack([g1[inside], g2[inside]], -1), jnp.float32)
    density = np.exp(np.asarray(EllipticityPrior(1.5, 4.0).log_prob(points), np.float64))
    assert density.sum() * (grid[1] - grid[0]) ** 2 == pytest.approx(1.0, abs=0.01)
    for d, lo, hi in [
        (TruncatedLogNormal(0.2, 0.7, 0.5, 6.0), 0.5, 6.0),
        (TruncatedPowerLaw(-1.9, 1e3, 2.5e5), 1e3, 2.5e5),
    ]:
        x = np.exp(np.linspace(np.log(lo), np.log(hi), 2001))
        pdf = np.exp(np.asarray(d.log_prob(jnp.asarray(x, jnp.float32)), np.float64))
        assert np.trapezoid(pdf, x) == pytest.approx(1.0, abs=2e-3)


def test_block_priors_and_full_priors_can_be_replaced():
    flux = dist.LogNormal(np.log(5e3), 0.3)
    task = SersicGalaxy(stamp_size=32, flux_prior=flux)
    theta = np.asarray(task.sample_prior(jax.random.key(3), 4 * NUM))
    assert np.median(theta[:, 0]) == pytest.approx(5e3, rel=0.05)
    full = dist.Uniform(
        jnp.array([1e3, 0.2, 0.5, -0.3, -0.3, -0.1, -0.1]),
        jnp.array([1e4, 1.0, 4.0, 0.3, 0.3, 0.1, 0.1]),
    ).to_event(1)
    assert SersicGalaxy(stamp_size=32, prior=full).prior is full
    with pytest.raises(ValueError, match="prior: give either"):
        SersicGalaxy(prior=full, flux_prior=flux)
    with pytest.raises(ValueError, match=r"prior: its support allows sersic_n in \[0.2, 8\]"):
        SersicGalaxy(sersic_prior=dist.Uniform(0.2, 8.0))
    with pytest.raises(ValueError, match="half_light_radius down to -inf"):
        SersicGalaxy(size_prior=dist.Normal(0.3, 0.1))
    box = dist.Uniform(-0.9 * jnp.ones(2), 0.9 * jnp.ones(2)).to_event(1)
    with pytest.raises(ValueError, match="expected inside the unit disk"):
        SersicGalaxy(ellipticity_prior=box)
    with pytest.raises(ValueError, match="ellipticity_prior: expected batch_shape"):
        SersicGalaxy(ellipticity_prior=dist.Uniform(-0.5, 0.5))


def test_poisson_noise_has_the_stated_variance(task):
    theta = np.tile(np.array([[2e4, 0.3, 1.0, 0.0, 0.0, 0.0, 0.0]], np.float32), (NUM, 1))
    x = np.asarray(task.run_simulator(jax.random.key(4), theta), np.float64)
    image = np.asarray(task.render(theta[0]), np.float64)
    residual = x - image
    assert abs(residual.mean()) < 0.1  # sky subtracted, unbiased
    variance = residual.var(axis=0)
    expected = task.sky_counts + task.read_noise_counts**2 + np.maximum(image, 0)
    assert task.sky_counts == pytest.approx(10 ** (0.4 * (30 - 21.5)) * 0.15**2, rel=1e-6)
    # 256 draws per pixel: each sample variance scatters by about 9 %.
    assert np.median(variance / expected) == pytest.approx(1.0, abs=0.03)
    bright = image > 4 * task.sky_counts
    assert bright.sum() > 10
    assert np.median(variance[bright] / expected[bright]) == pytest.approx(1.0, abs=0.06)
    np.testing.assert_allclose(np.asarray(task.noise_variance(image)), expected, rtol=1e-5)


def test_gaussian_noise_matches_the_likelihood_exactly(gaussian_task):
    task = gaussian_task
    theta = np.tile(GALAXY[None], (NUM, 1))
    x = np.asarray(task.run_simulator(jax.random.key(5), theta), np.float64)
    residual = x - np.asarray(task.render(GALAXY))
    assert residual.std() == pytest.approx(np.sqrt(75.0), rel=0.01)
    likelihood = task.likelihood(jnp.asarray(GALAXY))
    assert likelihood.event_shape == (32, 32)
    # The likelihood's log density of a noise draw equals the Gaussian formula.
    lp = float(likelihood.log_prob(jnp.asarray(x[0], jnp.float32)))
    expected = -0.5 * np.sum(residual[0] ** 2) / 75.0 - 0.5 * 1024 * np.log(2 * np.pi * 75.0)
    assert lp == pytest.approx(expected, rel=1e-4)
    batched = task.likelihood(jnp.asarray(theta[:4]))
    assert batched.batch_shape == (4,)


def test_make_theta_converts_quantities(task):
    theta = task.make_theta(
        flux=22.5 * u.mag,
        half_light_radius=4 * u.pix,
        sersic_n=2,
        axis_ratio=0.5,
        position_angle=90 * u.deg,
        x0=1 * u.pix,
        y0=-0.05 * u.arcsec,
    )
    flux = 10 ** (-0.4 * (22.5 - 30.0))
    np.testing.assert_allclose(
        theta, [flux, 0.6, 2.0, -1 / 3, 0.0, 0.15, -0.05], rtol=1e-5, atol=1e-6
    )
    same = task.make_theta(
        flux=flux * u.ct,
        half_light_radius=0.6 * u.arcsec,
        sersic_n=2.0,
        e1=-1 / 3,
        e2=0.0,
        x0=0.15 * u.arcsec,
        y0=-0.05 * u.arcsec,
    )
    np.testing.assert_allclose(same, theta, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="exactly one of the pairs"):
        task.make_theta(flux=1e3 * u.ct, half_light_radius=0.3 * u.arcsec, sersic_n=1.0)
    with pytest.raises(ValueError, match="half_light_radius: expected units"):
        task.make_theta(flux=1e3 * u.ct, half_light_radius=0.3 * u.s, sersic_n=1.0, e1=0.0, e2=0.0)
    with pytest.raises(TypeError, match="flux: expected an astropy Quantity"):
        task.make_theta(flux=1e3, half_light_radius=0.3 * u.arcsec, sersic_n=1.0, e1=0.0, e2=0.0)


@pytest.mark.parametrize(
    ("theta", "match"),
    [
        (np.array([1e3, 0.3, 1.0, 0.1, 0.1, 0.0, np.nan]), "y0 is nan"),
        (np.array([1e3, -0.3, 1.0, 0.1, 0.1, 0.0, 0.0]), "half_light_radius expected a positive"),
        (
            np.array([1e3, 0.3, 7.0, 0.1, 0.1, 0.0, 0.0]),
            r"sersic_n expected a value in \[0.5, 6.0\]",
        ),
        (np.array([1e3, 0.3, 0.4, 0.1, 0.1, 0.0, 0.0]), "sersic_n"),
        (np.array([1e3, 0.3, 1.0, 0.8, 0.7, 0.0, 0.0]), "e1, e2 expected e1² \\+ e2² < 1"),
        (np.array([-1.0, 0.3, 1.0, 0.1, 0.1, 0.0, 0.0]), "flux expected >= 0"),
        (np.zeros(6), r"theta: expected shape \(..., 7\)"),
    ],
    ids=["nan", "negative-size", "n-high", "n-low", "e-outside", "negative-flux", "shape"],
)
def test_bad_parameters_raise_naming_the_parameter(task, theta, match):
    with pytest.raises(ValueError, match=match):
        task.render(theta)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"pixel_scale": 0.1}, TypeError, "pixel_scale: expected an astropy Quantity"),
        ({"pixel_scale": 0.1 * u.s}, ValueError, "pixel_scale: expected units"),
        ({"pixel_scale": -0.1 * u.arcsec}, ValueError, "pixel_scale: expected a positive"),
        ({"stamp_size": 16}, ValueError, "stamp_size: expected an integer"),
        ({"stamp_size": (32, 200)}, ValueError, "stamp_size"),
        ({"stamp_size": 40.5}, ValueError, "stamp_size"),
        ({"psf": "moffat"}, TypeError, "psf: expected"),
        ({"read_noise": -1 * u.ct}, ValueError, "read_noise: expected a value >= 0"),
        ({"read_noise": 5 * u.mag}, ValueError, "read_noise: expected units"),
        ({"sky_level": 3 * u.s}, ValueError, "sky_level: expected counts"),
        ({"zero_point": 30}, TypeError, "zero_point"),
        ({"noise": "laplace"}, ValueError, "noise: expected one of"),
        (
            {"noise": "gaussian", "sky_level": 0 * u.ct, "read_noise": 0 * u.ct},
            ValueError,
            "positive variance",
        ),
        ({"padding": 1.0}, ValueError, "padding: expected a number >= 1.5"),
    ],
)
def test_bad_task_arguments_raise_naming_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        SersicGalaxy(**kwargs)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: GaussianPSF(0.2), TypeError, "fwhm: expected an astropy Quantity"),
        (lambda: GaussianPSF(-0.2 * u.arcsec), ValueError, "fwhm: expected a positive"),
        (
            lambda: MoffatPSF(0.2 * u.arcsec, beta=1.0),
            ValueError,
            "beta: expected a finite number > 1",
        ),
        (
            lambda: ImagePSF(np.ones((2, 2)), 0.03 * u.arcsec),
            ValueError,
            "image: expected a 2-D array at least 3x3",
        ),
        (
            lambda: ImagePSF(np.full((5, 5), np.nan), 0.03 * u.arcsec),
            ValueError,
            "image: expected finite",
        ),
        (
            lambda: ImagePSF(-np.ones((5, 5)), 0.03 * u.arcsec),
            ValueError,
            "image: expected a positive sum",
        ),
        (lambda: ImagePSF(np.ones((5, 5)), 0.03 * u.ct), ValueError, "pixel_scale: expected units"),
    ],
)
def test_bad_psf_arguments_raise_naming_the_argument(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_effective_psf_must_share_the_pixel_scale():
    psf = ImagePSF(np.ones((5, 5)), 0.03 * u.arcsec, includes_pixel=True)
    with pytest.raises(ValueError, match="psf: an effective PSF"):
        SersicGalaxy(pixel_scale=0.1 * u.arcsec, psf=psf)


def test_reference_posterior_rejects_bad_images(task):
    with pytest.raises(ValueError, match=r"x: expected shape \(32, 32\)"):
        task.sample_reference_posterior(jax.random.key(0), np.zeros((16, 16)))
    bad = np.zeros((32, 32))
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="x: expected finite values"):
        task.sample_reference_posterior(jax.random.key(0), bad)


def test_shipped_prior_constants_rederive_from_the_shared_data():
    assert DATA.is_dir(), f"{DATA} is missing: the shared data must be next to the repository"
    script = ROOT / "benchmarks" / "derive_sersic_prior.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check", "--data", str(DATA)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = json.loads(
        (ROOT / "astroprob" / "tasks" / "data" / "sersic_cosmos_prior.json").read_text()
    )
    assert shipped["sersic_n"]["num_galaxies"] == 276
    assert shipped["magnitude"]["num_galaxies"] == 100


@pytest.mark.slow
def test_nuts_recovers_the_truth_on_a_small_stamp(gaussian_task):
    task = gaussian_task
    truth = np.array([3000.0, 0.4, 1.8, 0.25, -0.1, 0.03, -0.02], np.float32)
    x = np.asarray(task.run_simulator(jax.random.key(11), np.tile(truth, (NUM, 1))))[0]
    samples = np.asarray(
        task.sample_reference_posterior(
            jax.random.key(12), x, num_samples=600, num_warmup=400, num_chains=2, init_theta=truth
        )
    )
    assert samples.shape == (1200, 7)
    low, high = np.percentile(samples, [0.5, 99.5], axis=0)
    assert np.all((truth >= low) & (truth <= high)), (low, truth, high)
    # The posterior is informative: far narrower than the prior in every parameter.
    prior = np.asarray(task.sample_prior(jax.random.key(13), 16 * NUM))
    assert np.all(samples.std(0) < 0.5 * prior.std(0))
