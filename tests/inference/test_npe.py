"""NPE: training, the prior-support bijection, the Posterior, save/load."""

import json
import math

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from flax import nnx

import astroprob as ap
from astroprob.inference import NPE
from astroprob.inference._compilation import EXECUTABLES
from astroprob.tasks import Task

NOISE = 0.3


def _box_linear_task():
    """θ ~ U(-2, 2)², x | θ ~ N(θ, 0.3² I): a posterior cut by the box."""
    return Task(
        name="box_linear",
        prior=dist.Uniform(-2.0 * jnp.ones(2), 2.0).to_event(1),
        simulator=lambda key, theta: theta + NOISE * jax.random.normal(key, (2,)),
        parameter_names=("offset", "slope"),
        observation_shape=(2,),
        parameter_units=(u.arcsec, None),
    )


def _gauss_linear_task():
    """θ ~ N(0, I₂), x | θ ~ N(θ, 0.3² I): posterior N(x/(1+s²), s²/(1+s²))."""
    return Task(
        name="gauss_linear_2d",
        prior=dist.Normal(jnp.zeros(2), 1.0).to_event(1),
        simulator=lambda key, theta: theta + NOISE * jax.random.normal(key, (2,)),
        parameter_names=("a", "b"),
        observation_shape=(2,),
    )


@pytest.fixture(scope="module")
def box_task():
    return _box_linear_task()


@pytest.fixture(scope="module")
def box_npe(box_task):
    theta, x = box_task.simulate(jax.random.key(0), 3000)
    npe = NPE(box_task, "nsf", hidden_features=32, num_transforms=2)
    return npe.fit(jax.random.key(1), theta, x, max_epochs=40, progress_bar=False)


@pytest.fixture(scope="module")
def gauss_npe():
    task = _gauss_linear_task()
    theta, x = task.simulate(jax.random.key(10), 4000)
    npe = NPE(task, "nsf", hidden_features=32, num_transforms=2)
    return npe.fit(jax.random.key(11), theta, x, max_epochs=150, progress_bar=False)


# ------------------------------------------------------------------ training
def test_training_lowers_loss_and_changes_weights(box_task):
    theta, x = box_task.simulate(jax.random.key(2), 600)
    npe = NPE(box_task, "maf", hidden_features=16, num_transforms=2)
    npe.fit(jax.random.key(3), theta, x, max_epochs=1, progress_bar=False)
    before = jax.tree.map(np.asarray, nnx.state(npe.network, nnx.Param))
    first_val = npe.history.validation_loss[0]
    npe.fit(jax.random.key(3), theta, x, max_epochs=15, batch_size=50, progress_bar=False)
    after = nnx.state(npe.network, nnx.Param)
    changed = jax.tree.leaves(
        jax.tree.map(lambda a, b: bool(np.any(a != np.asarray(b))), before, after)
    )
    assert all(changed)
    assert npe.history.best_validation_loss < first_val - 0.1
    assert npe.history.num_train + npe.history.num_validation == 600
    assert npe.history.compile_time_s > 0
    assert npe.history.train_time_s > 0


def test_fit_is_reproducible_from_the_key(box_task):
    theta, x = box_task.simulate(jax.random.key(4), 400)
    lps = []
    for _ in range(2):
        npe = NPE(box_task, "mdn", num_components=2, hidden_features=8)
        npe.fit(jax.random.key(5), theta, x, max_epochs=3, progress_bar=False)
        lps.append(np.asarray(npe.posterior(x[:5]).log_prob(theta[:5])))
    np.testing.assert_array_equal(lps[0], lps[1])


def test_early_stopping_keeps_the_best_epoch(box_npe):
    h = box_npe.history
    assert h.best_validation_loss == min(h.validation_loss)
    assert len(h.train_loss) == len(h.validation_loss) <= 40
    if h.stopped_early:
        assert len(h.validation_loss) - 1 - h.best_epoch == box_npe.training_config.patience


def test_nan_simulations_are_counted_and_excluded(box_task):
    theta, x = box_task.simulate(jax.random.key(6), 300)
    x = np.array(x)
    x[[3, 50, 51], 0] = np.nan
    x[7, 1] = np.inf
    npe = NPE(box_task, "mdn", num_components=1, hidden_features=8)
    with pytest.warns(UserWarning, match="4 of 300 simulations contain NaN or inf"):
        npe.fit(jax.random.key(7), theta, x, max_epochs=2, progress_bar=False)
    assert npe.history.num_invalid == 4
    assert npe.history.num_train + npe.history.num_validation == 296


@pytest.mark.parametrize(
    ("theta_shape", "x_shape", "match"),
    [
        ((10, 3), (10, 2), r"theta: expected shape \(n, 2\)"),
        ((10,), (10, 2), r"theta: expected shape \(n, 2\)"),
        ((10, 2), (9, 2), r"x: expected shape \(10, 2\)"),
        ((10, 2), (10, 2, 1), r"x: expected shape \(10, 2\)"),
    ],
)
def test_fit_rejects_bad_shapes(box_task, theta_shape, x_shape, match):
    npe = NPE(box_task, "mdn")
    with pytest.raises(ValueError, match=match):
        npe.fit(jax.random.key(0), jnp.zeros(theta_shape), jnp.zeros(x_shape), progress_bar=False)


def test_fit_rejects_theta_outside_prior(box_task):
    theta = jnp.zeros((20, 2)).at[4, 1].set(2.5)
    with pytest.raises(ValueError, match="1 rows are outside"):
        NPE(box_task, "mdn").fit(jax.random.key(0), theta, jnp.zeros((20, 2)), progress_bar=False)


def test_bad_options_raise(box_task):
    with pytest.raises(ValueError, match="density: expected one of"):
        NPE(box_task, "realnvp")
    with pytest.raises(TypeError, match="unknown training option"):
        NPE(box_task, "mdn").fit(jax.random.key(0), jnp.zeros((4, 2)), jnp.zeros((4, 2)), epochs=3)
    with pytest.raises(ValueError, match="validation_fraction"):
        NPE(box_task, "mdn").fit(
            jax.random.key(0), jnp.zeros((4, 2)), jnp.zeros((4, 2)), validation_fraction=1.5
        )
    with pytest.raises(RuntimeError, match="not trained yet"):
        NPE(box_task, "mdn").posterior(jnp.zeros(2))


# ------------------------------------------------------------- prior support
def test_samples_never_leave_the_box_prior(box_npe):
    # Observations at and beyond the box edge push posterior mass against it.
    x = jnp.array([[1.95, -1.95], [2.6, 0.0], [-2.6, 2.6], [0.0, 0.0]])
    samples = box_npe.posterior(x).sample(jax.random.key(8), 5000)
    assert samples.shape == (4, 5000, 2)
    assert bool(jnp.all(jnp.isfinite(box_npe.task.prior.log_prob(samples))))
    assert float(jnp.abs(samples).max()) <= 2.0


def test_log_prob_is_minus_inf_outside_and_normalised_inside(box_npe):
    post = box_npe.posterior(jnp.array([1.8, -0.5]))
    assert post.log_prob(jnp.array([2.01, 0.0])) == -jnp.inf
    assert post.log_prob(jnp.array([[0.0, -3.0]]))[0] == -jnp.inf
    # Midpoint quadrature over the box: the constrained density integrates to 1,
    # which fails if the bijection's log-Jacobian is missing or has the wrong sign.
    n = 200
    grid = (jnp.arange(n) + 0.5) / n * 4.0 - 2.0
    mesh = jnp.stack(jnp.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    mass = float(jnp.exp(post.log_prob(mesh)).sum() * (4.0 / n) ** 2)
    assert mass == pytest.approx(1.0, abs=0.03)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["two_moons", "gaussian_linear_uniform"])
def test_benchmark_box_priors_hold_all_samples(name):
    task = ap.tasks.get(name)
    theta, x = task.simulate(jax.random.key(9), 500)
    npe = NPE(task, "nsf", hidden_features=16, num_transforms=2)
    npe.fit(jax.random.key(10), theta, x, max_epochs=3, progress_bar=False)
    # Extreme observations, far outside what the prior predicts.
    x_obs = jnp.concatenate([x[:50], 10.0 * x[50:100]])
    samples = npe.posterior(x_obs).sample(jax.random.key(11), 200)
    assert bool(jnp.all(jnp.isfinite(task.prior.log_prob(samples))))


# ------------------------------------------------------------------ accuracy
def test_gaussian_posterior_matches_analytic(gauss_npe):
    x_obs = jnp.array([[0.4, -1.0], [1.5, 0.2], [-0.3, 0.8]])
    samples = np.asarray(gauss_npe.posterior(x_obs).sample(jax.random.key(12), 4000))
    shrink = 1.0 / (1.0 + NOISE**2)
    # Quantile-based moments: spline flows' identity tails put ~1 % of the mass far
    # out, which inflates a sample std without touching the bulk of the posterior.
    q16, median, q84 = np.quantile(samples, [0.16, 0.5, 0.84], axis=1)
    # 0.3 of the posterior std (0.29): 4000 simulations leave median errors of 0.03 to
    # 0.08 (largest of the six, over training seeds and weight decays 0 and 0.1, most
    # at x = 1.5, the edge of the data); ignoring the shrinkage would be off by 0.124.
    np.testing.assert_allclose(median, x_obs * shrink, atol=0.3 * NOISE * math.sqrt(shrink))
    np.testing.assert_allclose((q84 - q16) / 2, NOISE * math.sqrt(shrink), rtol=0.12)
    exact = dist.Normal(x_obs * shrink, NOISE * math.sqrt(shrink)).to_event(1)
    theta = exact.sample(jax.random.key(13), (200,)).transpose(1, 0, 2)  # (3, 200, 2)
    lp = gauss_npe.posterior(x_obs).log_prob(theta)
    exact_lp = exact.log_prob(theta.transpose(1, 0, 2)).T
    assert float(jnp.abs(lp - exact_lp).mean()) < 0.2


# ----------------------------------------------------------------- posterior
def test_posterior_shapes_single_and_batch(box_npe):
    single = box_npe.posterior(jnp.zeros(2))
    assert single.sample(jax.random.key(0), 7).shape == (7, 2)
    assert single.log_prob(jnp.zeros(2)).shape == ()
    assert single.log_prob(jnp.zeros((5, 2))).shape == (5,)
    batch = box_npe.posterior(jnp.zeros((3, 2)))
    assert batch.sample(jax.random.key(0), 7).shape == (3, 7, 2)
    assert batch.log_prob(jnp.zeros((3, 2))).shape == (3,)
    assert batch.log_prob(jnp.zeros((3, 5, 2))).shape == (3, 5)


def test_batch_posterior_equals_single_posteriors(box_npe):
    x = jnp.array([[0.3, -0.2], [1.0, 1.5]])
    theta = jnp.array([[[0.1, 0.1], [0.5, -1.0]], [[1.2, 1.4], [0.0, 0.0]]])
    batch = box_npe.posterior(x).log_prob(theta)
    for i in range(2):
        np.testing.assert_allclose(box_npe.posterior(x[i]).log_prob(theta[i]), batch[i], rtol=1e-5)


def test_sampling_many_observations_compiles_once(box_npe):
    x = jnp.zeros((1000, 2))
    post = box_npe.posterior(x)
    compiled = box_npe._sample_fn.num_compiled
    a = post.sample(jax.random.key(1), 1000)
    b = box_npe.posterior(x + 0.1).sample(jax.random.key(2), 1000)
    assert a.shape == b.shape == (1000, 1000, 2)
    assert box_npe._sample_fn.num_compiled == compiled + 1


@pytest.mark.parametrize(
    ("x_shape", "match"),
    [((3,), r"x: expected one observation"), ((4, 3), "x: expected"), ((2, 2, 2), "x: expected")],
)
def test_posterior_rejects_bad_observations(box_npe, x_shape, match):
    with pytest.raises(ValueError, match=match):
        box_npe.posterior(jnp.zeros(x_shape))


def test_posterior_rejects_bad_theta_and_nan(box_npe):
    with pytest.raises(ValueError, match="x: expected finite values"):
        box_npe.posterior(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="theta: expected a last axis of size 2"):
        box_npe.posterior(jnp.zeros(2)).log_prob(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"theta: expected shape \(3, 2\)"):
        box_npe.posterior(jnp.zeros((3, 2))).log_prob(jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="num_samples: expected a positive integer"):
        box_npe.posterior(jnp.zeros(2)).sample(jax.random.key(0), 0)


def test_summary_matches_samples_and_carries_units(box_npe):
    post = box_npe.posterior(jnp.array([[0.5, 0.5], [-1.0, 1.0]]))
    samples = np.asarray(post.sample(jax.random.key(3), 2000))
    table = post.summary()
    assert len(table) == 2
    assert table["offset_mean"].unit == u.arcsec
    assert not hasattr(table["slope_mean"], "unit") or table["slope_mean"].unit in (
        None,
        u.dimensionless_unscaled,
    )
    np.testing.assert_allclose(
        table["offset_mean"].to_value(u.arcsec), samples[:, :, 0].mean(1), rtol=1e-5
    )
    np.testing.assert_allclose(
        table["slope_q84"], np.quantile(samples[:, :, 1], 0.84, axis=1), rtol=1e-4
    )
    for name in ("offset", "slope"):
        cols = [
            np.asarray(getattr(table[f"{name}_{s}"], "value", table[f"{name}_{s}"]))
            for s in ("q2.5", "q16", "median", "q84", "q97.5")
        ]
        assert np.all(np.diff(np.stack(cols), axis=0) >= 0)
    fresh = post.summary(jax.random.key(4), num_samples=500)
    assert fresh.meta["num_samples"] == 500


# --------------------------------------------------------------- save / load
def test_save_load_round_trip_is_bit_identical(box_npe, box_task, tmp_path):
    box_npe.save(tmp_path / "run")
    loaded = NPE.load(tmp_path / "run", task=box_task)
    theta = box_task.sample_prior(jax.random.key(5), 50)
    x = jnp.linspace(-2, 2, 100).reshape(50, 2)
    np.testing.assert_array_equal(
        box_npe.posterior(x).log_prob(theta), loaded.posterior(x).log_prob(theta)
    )
    np.testing.assert_array_equal(
        box_npe.posterior(x).sample(jax.random.key(6), 20),
        loaded.posterior(x).sample(jax.random.key(6), 20),
    )
    assert loaded.history.validation_loss == box_npe.history.validation_loss
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_saved_run_loads_without_pickle(box_npe, box_task, tmp_path, monkeypatch):
    import pickle

    box_npe.save(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "config.json",
        "weights.msgpack",
    ]

    def refuse(*args, **kwargs):
        raise AssertionError("NPE.load must not unpickle anything")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    loaded = NPE.load(tmp_path / "run", task=box_task)
    assert loaded.is_fitted


def test_load_rejects_foreign_newer_and_mixed_files(box_npe, box_task, tmp_path):
    run = box_npe.save(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())

    def write(**changes):
        (run / "config.json").write_text(json.dumps({**config, **changes}))

    write(astroprob_version="99.0.0")
    with pytest.raises(ValueError, match="newer than the installed"):
        NPE.load(run, task=box_task)
    write(format_version=7)
    with pytest.raises(ValueError, match="expected format_version 3"):
        NPE.load(run, task=box_task)
    write(format="something-else")
    with pytest.raises(ValueError, match="expected an astroprob-npe config"):
        NPE.load(run, task=box_task)
    write(weights_sha256="0" * 64)
    with pytest.raises(ValueError, match="checksum does not match"):
        NPE.load(run, task=box_task)
    write()
    with pytest.raises(ValueError, match="not a built-in task"):
        NPE.load(run)
    with pytest.raises(ValueError, match="task: expected parameters"):
        NPE.load(run, task=_gauss_linear_task())
    (run / "weights.msgpack").unlink()
    with pytest.raises(FileNotFoundError, match="weights.msgpack"):
        NPE.load(run, task=box_task)


def test_builtin_task_reloads_by_name(tmp_path):
    task = ap.tasks.get("gaussian_linear")
    theta, x = task.simulate(jax.random.key(0), 200)
    npe = NPE(task, "mdn", num_components=2, hidden_features=8)
    npe.fit(jax.random.key(1), theta, x, max_epochs=2, progress_bar=False).save(tmp_path / "r")
    loaded = NPE.load(tmp_path / "r")
    assert loaded.task is task
    np.testing.assert_array_equal(
        npe.posterior(x[:3]).log_prob(theta[:3]), loaded.posterior(x[:3]).log_prob(theta[:3])
    )


@pytest.mark.parametrize("x_scaling", ["none", "global", "per_feature"])
def test_x_scaling_choices_apply_and_survive_save_load(x_scaling, tmp_path):
    task = ap.tasks.get("gaussian_linear")
    theta, x = task.simulate(jax.random.key(0), 200)
    x = x * 100.0 + 5.0
    npe = NPE(task, "mdn", num_components=1, hidden_features=8, x_scaling=x_scaling)
    npe.fit(jax.random.key(1), theta, x, max_epochs=1, progress_bar=False)
    shift, scale = np.asarray(npe.network.x_shift[...]), np.asarray(npe.network.x_scale[...])
    if x_scaling == "none":
        assert shift.shape == scale.shape == ()
        assert float(shift) == 0.0
        assert float(scale) == 1.0
    elif x_scaling == "global":
        assert shift.shape == ()
        assert float(scale) == pytest.approx(float(np.std(np.asarray(x))), rel=0.1)
    else:
        assert shift.shape == (10,)
    npe.save(tmp_path / "r")
    loaded = NPE.load(tmp_path / "r")
    np.testing.assert_array_equal(
        npe.posterior(x[:3]).log_prob(theta[:3]), loaded.posterior(x[:3]).log_prob(theta[:3])
    )


def test_unknown_x_scaling_is_rejected():
    with pytest.raises(ValueError, match="x_scaling"):
        NPE(ap.tasks.get("two_moons"), x_scaling="minmax")


def test_a_refitted_estimator_reuses_the_posterior_programs(box_task):
    """Same architecture, same shapes: the sampler and density are compiled once."""
    theta, x = box_task.simulate(jax.random.key(31), 300)
    xo = jnp.zeros((3, 2))
    first = NPE(box_task, "maf", hidden_features=16, num_transforms=2)
    first.fit(jax.random.key(32), theta, x, max_epochs=2, progress_bar=False)
    samples_first = first.posterior(xo).sample(jax.random.key(1), 50)
    hits, misses = EXECUTABLES.hits, EXECUTABLES.misses
    second = NPE(box_task, "maf", hidden_features=16, num_transforms=2)
    second.fit(jax.random.key(33), theta, x, max_epochs=2, progress_bar=False)
    post = second.posterior(xo)
    samples = post.sample(jax.random.key(1), 50)
    log_prob = post.log_prob(samples)
    log_prob_again = post.log_prob(samples)
    # Training (2 programs) and the sampler hit; log_prob is new (first was not asked).
    assert EXECUTABLES.hits == hits + 3
    assert EXECUTABLES.misses == misses + 1
    assert second._log_prob_fn.num_compiled == 1
    np.testing.assert_array_equal(log_prob, log_prob_again)
    # The shared executable computes the second network's posterior, not the first's.
    assert not np.array_equal(samples, samples_first)
    graphdef, state = nnx.split(second.network)
    reference = jax.jit(
        lambda s, key: second._bijection.to_constrained(nnx.merge(graphdef, s).sample(key, xo, 50))
    )(state, jax.random.key(1))
    np.testing.assert_allclose(samples, reference, rtol=1e-6, atol=1e-6)


def test_a_reloaded_estimator_reuses_the_posterior_programs(box_npe, box_task, tmp_path):
    """The state read from disk is put on the device once; the sampler is shared."""
    xo = jnp.zeros((4, 2))
    expected = box_npe.posterior(xo).sample(jax.random.key(5), 30)
    loaded = NPE.load(box_npe.save(tmp_path / "run"), task=box_task)
    hits, misses = EXECUTABLES.hits, EXECUTABLES.misses
    samples = loaded.posterior(xo).sample(jax.random.key(5), 30)
    assert (EXECUTABLES.hits, EXECUTABLES.misses) == (hits + 1, misses)
    np.testing.assert_array_equal(samples, expected)
