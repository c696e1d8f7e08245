"""SupernovaLightCurves: light-curve shapes, the observing schedule, noise, mixtures, bad input."""

import math
from pathlib import Path

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.cosmology import Planck18

import astroprob as ap
from astroprob.io.lightcurves import LightCurves, read_snana_text
from astroprob.tasks._lightcurve_models import (
    bazin_log_shape,
    bazin_peak_offset,
    villar_log_shape,
)
from astroprob.tasks.supernova import SupernovaLightCurves, Survey

N = 256
SMALL = Survey(bands=("g", "r", "i"), max_points=12, time_range=(-40.0, 80.0))


@pytest.fixture(scope="module")
def ia_task():
    return SupernovaLightCurves("Ia", survey=SMALL)


@pytest.fixture(scope="module")
def ia_sims(ia_task):
    theta, x = ia_task.simulate(jax.random.key(0), N)
    return np.asarray(theta), np.asarray(x)


# ------------------------------------------------------------------ parametric shapes
def test_bazin_peak_is_at_t_peak_analytically():
    t_peak, tau_rise, tau_fall = 3.0, 2.5, 20.0
    # d/dt log F = 0 at t_peak, and log F(t_peak) = 0 by construction.
    grad = jax.grad(lambda t: bazin_log_shape(t, t_peak, tau_rise, tau_fall))(t_peak)
    assert abs(float(grad)) < 1e-6
    assert float(bazin_log_shape(t_peak, t_peak, tau_rise, tau_fall)) == pytest.approx(
        0.0, abs=1e-6
    )
    grid = jnp.linspace(-60.0, 120.0, 180_001)
    log_f = bazin_log_shape(grid, t_peak, tau_rise, tau_fall)
    assert float(grid[jnp.argmax(log_f)]) == pytest.approx(t_peak, abs=2e-3)
    assert float(jnp.max(log_f)) <= 1e-6
    # t0 = t_peak - tau_rise ln(tau_fall/tau_rise - 1): the rise factor is 1/2 there.
    offset = float(bazin_peak_offset(tau_rise, tau_fall))
    assert offset == pytest.approx(tau_rise * math.log(tau_fall / tau_rise - 1.0))
    t0 = t_peak - offset
    ratio = bazin_log_shape(t0, t_peak, tau_rise, tau_fall) - bazin_log_shape(
        t0 + 10.0, t_peak, tau_rise, tau_fall
    )
    expected = math.log(0.5) + 10.0 / tau_fall - math.log(1 / (1 + math.exp(-10.0 / tau_rise)))
    assert float(ratio) == pytest.approx(expected, rel=1e-5)


def test_bazin_stays_finite_far_from_peak():
    far = jnp.array([-1e4, -500.0, 500.0, 1e4])
    assert np.all(np.isfinite(np.asarray(bazin_log_shape(far, 0.0, 1.0, 10.0))))


def test_villar_plateau_and_decline():
    t0, tau_rise, tau_fall, gamma, beta = 0.0, 3.0, 15.0, 60.0, -0.005
    s = jnp.array([20.0, 40.0, gamma - 1e-3, gamma, gamma + 30.0])
    log_f = villar_log_shape(s, t0, tau_rise, tau_fall, gamma, beta)
    rise = jax.nn.log_sigmoid(s / tau_rise)
    np.testing.assert_allclose(log_f[:2] - rise[:2], np.log1p(beta * np.asarray(s[:2])), rtol=1e-5)
    assert float(log_f[2]) == pytest.approx(float(log_f[3]), abs=1e-4)  # continuous at gamma
    decline = (log_f[4] - rise[4]) - (log_f[3] - rise[3])
    assert float(decline) == pytest.approx(-30.0 / tau_fall, rel=1e-5)


def test_light_curve_peak_flux_and_colours(ia_task, ia_sims):
    theta = ia_sims[0][:4]
    names = ia_task.parameter_names
    grid = np.linspace(-60.0, 100.0, 16_001, dtype=np.float32)
    flux = np.asarray(ia_task.light_curve(theta, grid))
    ref = ia_task.bands.index("r")
    peak_flux = 10 ** (-0.4 * (theta[:, names.index("peak_mag")] - 27.5))
    np.testing.assert_allclose(flux[:, ref].max(axis=1), peak_flux, rtol=1e-4)
    np.testing.assert_allclose(
        grid[flux[:, ref].argmax(axis=1)], theta[:, names.index("t_peak")], atol=0.02
    )
    tau_rise, tau_fall = theta[:, 2], theta[:, 3]
    t0 = theta[:, 0] - tau_rise * np.log(tau_fall / tau_rise - 1)
    for band, wavelength in (("g", 4810.0), ("i", 7520.0)):
        b = ia_task.bands.index(band)
        # Colours are differences of peak magnitudes.
        colour = theta[:, names.index(f"{band}-r")]
        np.testing.assert_allclose(
            flux[:, b].max(axis=1) / flux[:, ref].max(axis=1), 10 ** (-0.4 * colour), rtol=1e-4
        )
        # Each band peaks at its own Bazin maximum, with the excess decline time scaled.
        scale = (wavelength / 6170.0) ** theta[:, names.index("decline_index")]
        tau_band = tau_rise + (tau_fall - tau_rise) * scale
        t_band = t0 + tau_rise * np.log(tau_band / tau_rise - 1)
        np.testing.assert_allclose(grid[flux[:, b].argmax(axis=1)], t_band, atol=0.02)
        assert np.all((t_band <= theta[:, 0]) == (wavelength < 6170.0))


def test_redshift_stretches_time_and_dims_flux():
    task = SupernovaLightCurves("Ia", survey=SMALL, redshift=(0.02, 0.5))
    names = task.parameter_names
    assert names[:3] == ("t_peak", "peak_abs_mag", "redshift")
    assert task.parameter_units[2] is None
    base = np.array([[0.0, -19.3, 0.05, 3.0, 20.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    far = base.copy()
    far[0, 2] = 0.3
    days = np.array([0.0, 10.0, 25.0], dtype=np.float32)
    near_flux = np.asarray(task.light_curve(base, days * 1.05))[0, 1]
    far_flux = np.asarray(task.light_curve(far, days * 1.3))[0, 1]
    # Same shape in rest-frame days; peak flux falls with the Planck18 distance modulus.
    np.testing.assert_allclose(near_flux / near_flux[0], far_flux / far_flux[0], rtol=1e-4)
    dm = Planck18.distmod(0.3).value - Planck18.distmod(0.05).value
    assert -2.5 * np.log10(far_flux[0] / near_flux[0]) == pytest.approx(dm, abs=2e-3)


# ------------------------------------------------------------------ simulated layout
def test_parameter_names_and_units():
    ia = SupernovaLightCurves("Ia")
    assert ia.parameter_names == (
        "t_peak",
        "peak_mag",
        "tau_rise",
        "tau_fall",
        "decline_index",
        "g-r",
        "i-r",
        "z-r",
    )
    assert ia.parameter_units[:5] == (u.day, u.mag, u.day, u.day, None)
    assert ia.observation_shape == (4, 32, 4)
    iip = SupernovaLightCurves("II-P")
    assert iip.form == "villar"
    assert iip.parameter_names[:7] == (
        "t0",
        "amplitude_mag",
        "tau_rise",
        "tau_fall",
        "decline_index",
        "plateau_duration",
        "plateau_slope",
    )
    assert iip.parameter_units[6] == u.day**-1
    # One band, or bands without known wavelengths: no chromatic decline.
    single = SupernovaLightCurves("Ia", survey=Survey(bands=("r",)))
    assert single.parameter_names == ("t_peak", "peak_mag", "tau_rise", "tau_fall")
    assert isinstance(ap.tasks.SupernovaLightCurves("Ibc"), ap.tasks.Task)


def test_simulated_layout(ia_task, ia_sims):
    theta, x = ia_sims
    assert x.shape == (N, 3, 12, 4)
    assert np.all(np.isfinite(x))
    mask = x[..., 3]
    assert set(np.unique(mask)) <= {0.0, 1.0}
    observed = mask == 1
    assert np.all(observed.sum(axis=(1, 2)) >= 1)
    assert np.all(x[~observed] == 0.0)  # padding is all zeros
    # Observations come first in each band, in time order, inside the time range.
    assert np.all(np.diff(mask, axis=2) <= 0)
    t = x[..., 0]
    assert np.all(np.diff(t, axis=2)[observed[..., 1:]] > 0)
    assert t[observed].min() >= -40.0
    assert t[observed].max() <= 80.0
    assert np.all(x[..., 2][observed] > 0)
    # Missing epochs and seasonal gaps leave padding: the schedule is irregular.
    assert 0.2 < observed.mean() < 0.9


def test_noise_matches_the_reported_errors(ia_task, ia_sims):
    theta, x = ia_sims
    model = np.asarray(ia_task.light_curve(theta, x[..., 0]))
    observed = x[..., 3] == 1
    pulls = ((x[..., 1] - model) / np.where(observed, x[..., 2], 1.0))[observed]
    assert abs(pulls.mean()) < 0.05
    assert pulls.std() == pytest.approx(1.0, abs=0.05)
    # Heteroscedastic: the errors differ between the epochs of one light curve.
    err = x[..., 2]
    spread = np.where(observed, err, 0).max(axis=(1, 2)) - np.where(observed, err, np.inf).min(
        axis=(1, 2)
    )
    assert np.all(spread[observed.sum(axis=(1, 2)) > 1] > 0)


def test_same_key_same_light_curves_and_one_compilation(ia_task, ia_sims):
    theta, x = ia_task.simulate(jax.random.key(0), N)
    np.testing.assert_array_equal(np.asarray(x), ia_sims[1])
    assert ia_task._simulate_batch._cache_size() == 1


def test_slots_and_missing_bands():
    survey = Survey(
        bands=("g", "r"),
        max_points=10,
        time_range=(0.0, 100.0),
        season_length=400.0,
        observe_probability=1.0,
        band_missing_probability=0.5,
    )
    task = SupernovaLightCurves("Ibc", survey=survey)
    _, x = task.simulate(jax.random.key(1), 400)
    x = np.asarray(x)
    observed = x[..., 3] == 1
    present = observed.all(axis=2)
    empty = ~observed.any(axis=2)
    # With no losses and no season, a band is either complete or missing altogether (the
    # fallback of an empty light curve keeps one reference-band epoch).
    fallback = ~present.any(axis=1)
    assert np.all(present | empty | fallback[:, None])
    assert np.all(observed[fallback].sum(axis=(1, 2)) == 1)
    # Each epoch lies in its own 10-day slot.
    slot = np.floor(x[..., 0] / 10.0)
    np.testing.assert_array_equal(
        slot[present], np.broadcast_to(np.arange(10), slot[present].shape)
    )
    # One band missing (p = 1/2) or both (p = 1/4, then the fallback leaves one band empty):
    # half the bands are empty in those cases, none otherwise; 0.375 on average.
    assert empty.mean() == pytest.approx(0.375, abs=0.05)
    assert fallback.mean() == pytest.approx(0.25, abs=0.06)


def test_seasonal_gaps():
    survey = Survey(
        bands=("g", "r"),
        max_points=20,
        time_range=(-50.0, 150.0),
        season_length=30.0,
        observe_probability=1.0,
        band_missing_probability=0.0,
    )
    task = SupernovaLightCurves("Ia", survey=survey)
    _, x = task.simulate(jax.random.key(2), 400)
    x = np.asarray(x)
    observed = x[..., 3] == 1
    t = x[..., 0]
    first = np.where(observed, t, 1e9).min(axis=(1, 2))
    span = np.where(observed, t, -1e9).max(axis=(1, 2)) - first
    assert np.all(span <= 30.0)
    # The season always overlaps the time range, at a uniform phase: its start is uniform
    # on [-50 - 30, 150], so the first observation is spread over the whole range.
    assert np.all(observed.any(axis=(1, 2)))
    assert np.mean(observed.sum(axis=(1, 2)) >= 4) > 0.8
    hist = np.histogram(first, bins=4, range=(-50.0, 150.0))[0]
    assert hist.min() > 0.15 * len(first)


# ---------------------------------------------------------------------- mixtures
def test_mixture_types_and_prior():
    task = SupernovaLightCurves(
        ["Ia", "Ibc", "II-P", "II-L"],
        survey=SMALL,
        type_probabilities=[0.4, 0.2, 0.2, 0.2],
    )
    assert task.form == "villar"
    assert task.types == ("Ia", "Ibc", "II-P", "II-L")
    types, theta, x = task.simulate_typed(jax.random.key(3), 2000)
    types, theta = np.asarray(types), np.asarray(theta)
    assert x.shape == (2000, 3, 12, 4)
    freq = np.bincount(types, minlength=4) / 2000
    np.testing.assert_allclose(freq, [0.4, 0.2, 0.2, 0.2], atol=0.04)
    low, high = task.type_bounds
    assert np.all((theta >= low[types]) & (theta <= high[types]))
    joint = np.asarray(task.type_log_prob(theta))
    assert np.all(np.isfinite(joint[np.arange(2000), types]))
    # The mixture density is the sum over types of p(M) p(θ | M).
    np.testing.assert_allclose(
        np.asarray(task.prior.log_prob(jnp.asarray(theta))),
        np.asarray(jax.nn.logsumexp(joint, axis=1)),
        rtol=1e-6,
    )
    # II-P plateaus are long, II-L plateaus short: the type shows in the parameters.
    duration = theta[:, task.parameter_names.index("plateau_duration")]
    assert duration[types == 2].min() > duration[types == 3].max()


# -------------------------------------------------------------------- real data in
def test_observe_converts_units_and_layout(ia_task):
    shape = (1, 3, 3)
    time = np.array([[[100.0, 110.0, 0.0], [105.0, 0, 0], [95.0, 130.0, 140.0]]])
    mask = np.array([[[1, 1, 0], [1, 0, 0], [1, 1, 1]]], bool)
    lc = LightCurves(
        ids=("sn",),
        bands=("r", "g", "i"),
        time=time,
        flux=np.full(shape, 1000.0),
        flux_err=np.full(shape, 10.0),
        mask=mask,
        redshift=np.array([0.05]),
    )
    obs = ia_task.observe(lc, t_ref=100.0)
    assert obs.shape == (1, 3, 12, 4)
    np.testing.assert_allclose(obs[0, 0, :1], [[5.0, 1000.0, 10.0, 1.0]])  # g row
    np.testing.assert_allclose(obs[0, 1, :2, 0], [0.0, 10.0])  # r row
    np.testing.assert_allclose(obs[0, 2, :3, 0], [-5.0, 30.0, 40.0])
    assert np.all(obs[0, 0, 1:] == 0)
    with pytest.raises(ValueError, match="drop_outside"):
        ia_task.observe(lc, t_ref=0.0)
    with pytest.raises(ValueError, match="t_ref"):
        ia_task.observe(lc, t_ref="peak")
    with pytest.raises(TypeError, match="lightcurves"):
        ia_task.observe(obs, t_ref=0.0)


def test_observe_real_ps1mds_light_curves():
    repo = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
    folder = repo.parent / "shared" / "data" / "ps1mds_superraenn_examples" / "example_LCs"
    assert folder.is_dir(), f"shared test data missing: {folder}"
    lcs = read_snana_text(folder)
    task = SupernovaLightCurves(
        "II-P", survey=Survey(bands=("g", "r", "i", "z"), max_points=80, zero_point=22.5)
    )
    t_ref = lcs.brightest_time()
    with pytest.raises(ValueError, match="drop_outside"):
        task.observe(lcs, t_ref)  # three years of data do not fit in -50..150 d
    obs = task.observe(lcs, t_ref, drop_outside=True)
    assert obs.shape == (10, 4, 80, 4)
    rel = lcs.time - t_ref[:, None, None]
    inside = lcs.mask & (rel >= -50) & (rel <= 150)
    np.testing.assert_array_equal(obs[..., 3].sum(axis=2), inside.sum(axis=2))
    # FLUXCAL (zero point 27.5) becomes flux at zero point 22.5: divided by 100.
    np.testing.assert_allclose(
        obs[..., 1].max(axis=(1, 2)),
        np.where(inside, lcs.flux, -np.inf).max(axis=(1, 2)) / 100,
        rtol=1e-5,
    )


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: SupernovaLightCurves("SLSN"), "sn_type"),
        (lambda: SupernovaLightCurves(["Ia", "Ia"]), "sn_type"),
        (lambda: SupernovaLightCurves("II-P", form="bazin"), "form"),
        (lambda: SupernovaLightCurves("Ia", form="salt"), "form"),
        (lambda: SupernovaLightCurves("Ia", redshift=(0.0, 1.0)), "redshift"),
        (lambda: SupernovaLightCurves("Ia", reference_band="y"), "reference_band"),
        (lambda: SupernovaLightCurves("Ia", prior_bounds={"stretch": (0, 1)}), "prior_bounds"),
        (lambda: SupernovaLightCurves("Ia", prior_bounds={"tau_fall": (2.0, 30.0)}), "tau_fall"),
        (
            lambda: SupernovaLightCurves("II-P", prior_bounds={"plateau_slope": (-0.02, 0.0)}),
            "plateau_slope",
        ),
        (lambda: SupernovaLightCurves("Ia", prior_bounds={"t_peak": (5.0, -5.0)}), "low < high"),
        (
            lambda: SupernovaLightCurves("Ia", prior_bounds={"t_peak": (-5 * u.m, 5 * u.m)}),
            r"prior_bounds\['t_peak'\]",
        ),
        (lambda: SupernovaLightCurves("Ia", survey=Survey(bands=("g", "X"))), "no default colour"),
        (lambda: SupernovaLightCurves("Ia", type_probabilities=[0.5]), "type_probabilities"),
        (lambda: Survey(max_points=-3), "max_points"),
        (lambda: Survey(max_points=0), "max_points"),
        (lambda: Survey(bands=()), "bands"),
        (lambda: Survey(time_range=(-10 * u.m, 10 * u.m)), "time_range"),
        (lambda: Survey(time_range=(-10.0, math.nan)), "time_range"),
        (lambda: Survey(season_length=-1.0), "season_length"),
        (lambda: Survey(observe_probability=1.5), "observe_probability"),
        (lambda: Survey(observe_probability=(0.9, 0.3)), "observe_probability"),
        (lambda: Survey(season_length=(10.0, 20.0, 30.0)), "season_length"),
        (lambda: Survey(limiting_mag=(24 * u.s, 25 * u.s)), "limiting_mag"),
        (lambda: Survey(calibration_error=-0.1), "calibration_error"),
    ],
)
def test_bad_configuration_raises(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_quantities_are_accepted():
    survey = Survey(
        time_range=(-2, 6) * u.week, season_length=0.5 * u.year, limiting_mag=(22, 23) * u.mag
    )
    assert survey.time_range == pytest.approx((-14.0, 42.0))
    assert survey.season_length == pytest.approx((182.625, 182.625))
    assert Survey(observe_probability=(0.3, 0.9)).observe_probability == (0.3, 0.9)


def test_bad_parameters_raise(ia_task, ia_sims):
    theta = ia_sims[0][:2].copy()
    theta[1, 2] = np.nan
    with pytest.raises(ValueError, match="theta: expected finite values; row 1 has tau_rise"):
        ia_task.run_simulator(jax.random.key(0), theta)
    theta[1, 2] = 100.0
    with pytest.raises(ValueError, match="theta: .* tau_rise=100"):
        ia_task.run_simulator(jax.random.key(0), theta)
    with pytest.raises(ValueError, match=r"theta: expected shape \(n, 7\)"):
        ia_task.run_simulator(jax.random.key(0), theta[:, :3])
    with pytest.raises(ValueError, match="time: expected days"):
        ia_task.light_curve(ia_sims[0][:1], [1.0, 2.0] * u.m)
    with pytest.raises(ValueError, match="n: expected a positive integer"):
        ia_task.simulate_typed(jax.random.key(0), -1)
