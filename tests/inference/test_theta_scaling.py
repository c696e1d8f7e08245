"""Standardisation of the parameters: per parameter, or by linear regression on the data."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from flax import nnx

import astroprob as ap
from astroprob.flows import make_density
from astroprob.inference import NPE
from astroprob.inference import _network as network_module
from astroprob.inference._network import PosteriorNetwork, data_statistics, linear_statistics
from astroprob.inference._support import SupportBijection
from astroprob.tasks import Task
from astroprob.tasks._priors import JointPrior

NOISE = 0.3
DIM = 2


def _linear_gaussian_task():
    """θ ~ N(0, I₂), x = M θ + N(0, 0.3² I₃): a Gaussian posterior whose mean is linear in x."""
    mixing = jnp.array([[1.0, 0.5], [-0.4, 1.2], [0.3, 0.3]])
    return Task(
        name="linear_gaussian_3x2",
        prior=dist.Normal(jnp.zeros(DIM), 1.0).to_event(1),
        simulator=lambda key, theta: mixing @ theta + NOISE * jax.random.normal(key, (3,)),
        parameter_names=("a", "b"),
        observation_shape=(3,),
    ), np.asarray(mixing, np.float64)


def _exact_posterior(mixing, x):
    """N(Σ Mᵀ x / s², Σ) with Σ = (I + Mᵀ M / s²)⁻¹, for observations ``(n, 3)``."""
    precision = np.eye(DIM) + mixing.T @ mixing / NOISE**2
    covariance = np.linalg.inv(precision)
    mean = np.asarray(x, np.float64) @ (covariance @ mixing.T / NOISE**2).T
    return dist.MultivariateNormal(jnp.asarray(mean), jnp.asarray(covariance))


@pytest.fixture(scope="module")
def simulations():
    task, mixing = _linear_gaussian_task()
    theta, x = task.simulate(jax.random.key(0), 4000)
    return task, mixing, np.asarray(theta), np.asarray(x)


def _network(theta, x, *, linear, key=0):
    """A posterior network at initialisation: the NSF is the identity map there."""
    x_shift, x_scale = data_statistics(x, per_feature=True)
    z = (x - np.asarray(x_shift)) / np.asarray(x_scale)
    slope = None
    if linear:
        shift, slope, scale = linear_statistics(theta, z)
    else:
        shift, scale = data_statistics(theta, per_feature=True)
    density = make_density("nsf", DIM, x.shape[1], rngs=nnx.Rngs(key), num_transforms=2)
    return PosteriorNetwork(density, None, shift, scale, x_shift, x_scale, slope)


def test_linear_statistics_whiten_the_training_residuals():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 3))
    slopes = np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]])
    mixing = np.array([[1.0, 0.0], [0.8, 0.6]])  # correlated residuals
    u = 0.7 + z @ slopes + 0.2 * rng.normal(size=(2000, 2)) @ mixing.T
    shift, slope, cholesky = (np.asarray(a, np.float64) for a in linear_statistics(u, z))
    np.testing.assert_allclose(shift, 0.7, atol=0.02)
    np.testing.assert_allclose(slope, slopes, atol=0.02)
    np.testing.assert_allclose(cholesky @ cholesky.T, 0.04 * mixing @ mixing.T, rtol=0.1, atol=1e-3)
    white = np.linalg.solve(cholesky, (u - shift - z @ slope).T).T
    np.testing.assert_allclose(white.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(white.T @ white / (2000 - 4), np.eye(2), atol=1e-4)
    # Negative control: z-scoring each parameter leaves the regression in the residual.
    shift0, scale0 = (np.asarray(a, np.float64) for a in data_statistics(u, per_feature=True))
    plain = (u - shift0) / scale0
    assert abs(np.corrcoef(plain[:, 1], z[:, 2])[0, 1]) > 0.8
    assert abs(np.corrcoef(white[:, 1], z[:, 2])[0, 1]) < 1e-3


def test_linear_statistics_in_chunks_with_a_constant_feature(monkeypatch):
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(size=(500, 2)), np.zeros((500, 1))], axis=1)
    u = z[:, :2] @ np.array([[1.0, 0.5], [-1.0, 2.0]]) + 0.1 * rng.normal(size=(500, 2))
    whole = [np.asarray(a) for a in linear_statistics(u, z)]
    monkeypatch.setattr(network_module, "CHUNK_VALUES", 64)  # 16 rows per chunk
    chunked = [np.asarray(a) for a in linear_statistics(u, z)]
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The constant feature is collinear with the intercept: minimum-norm slope 0.
    np.testing.assert_allclose(whole[1][2], 0.0, atol=1e-6)
    design = np.concatenate([np.ones((500, 1)), z[:, :2]], axis=1)
    reference = np.linalg.lstsq(design, u, rcond=None)[0]
    np.testing.assert_allclose(whole[1][:2], reference[1:], rtol=1e-5)
    np.testing.assert_allclose(whole[0], reference[0], atol=1e-6)


def test_linear_statistics_whiten_parameters_of_very_different_scales():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(5000, 2))
    u = rng.normal(size=(5000, 2)) * np.array([100.0, 0.01])
    shift, slope, cholesky = (np.asarray(a, np.float64) for a in linear_statistics(u, z))
    white = np.linalg.solve(cholesky, (u - shift - z @ slope).T).T
    np.testing.assert_allclose(white.std(axis=0), 1.0, rtol=1e-3)


def test_linear_statistics_need_more_simulations_than_features():
    with pytest.raises(ValueError, match="more training simulations than data features"):
        linear_statistics(np.zeros((4, 2)), np.ones((4, 3)))


def test_linear_network_at_initialisation_is_the_exact_linear_gaussian_posterior(simulations):
    _, mixing, theta, x = simulations
    x_test, theta_test = x[:300], theta[:300]
    exact = np.asarray(_exact_posterior(mixing, x_test).log_prob(jnp.asarray(theta_test)))
    for linear, bound in ((True, 0.02), (False, None)):
        net = _network(theta, x, linear=linear)
        log_q = np.asarray(net.log_prob(jnp.asarray(theta_test), jnp.asarray(x_test)))
        gap = float(np.mean(exact - log_q))  # Monte Carlo estimate of the expected KL
        if linear:
            assert abs(gap) < bound
        else:  # negative control: the prior-like z-score is far from the posterior
            assert gap > 1.0


def test_linear_network_log_prob_is_the_change_of_variables(simulations):
    _, _, theta, x = simulations
    net = _network(theta, x, linear=True)
    # Move the flow away from the identity, so that the check involves its density too.
    nnx.update(net, jax.tree.map(lambda p: p + 0.1, nnx.state(net, nnx.Param)))
    u, xs = jnp.asarray(theta[:5]), jnp.asarray(x[:5])
    context = net.context(xs)
    scale = net.theta_scale[...]

    def standardise(u_row, context_row):
        shift = net.theta_shift[...] + context_row @ net.theta_slope[...]
        return jnp.linalg.solve(scale, u_row - shift)

    for i in range(5):
        z = standardise(u[i], context[i])
        jac = jax.jacobian(standardise)(u[i], context[i])
        expected = net.density.log_prob(z[None], context[i : i + 1])[0] + jnp.linalg.slogdet(jac)[1]
        np.testing.assert_allclose(
            net.log_prob(u[i : i + 1], xs[i : i + 1])[0], expected, rtol=1e-5
        )


def test_linear_network_samples_invert_the_standardisation(simulations):
    _, _, theta, x = simulations
    net = _network(theta, x, linear=True)
    nnx.update(net, jax.tree.map(lambda p: p + 0.05, nnx.state(net, nnx.Param)))
    xs = jnp.asarray(x[:4])
    key = jax.random.key(7)
    u = net.sample(key, xs, 16)  # (4, 16, 2)
    z = net.density.sample(key, net.context(xs), 16)
    shift = net.theta_shift[...] + net.context(xs) @ net.theta_slope[...]
    back = jnp.linalg.solve(net.theta_scale[...], (u - shift[:, None, :]).reshape(-1, DIM).T).T
    np.testing.assert_allclose(back.reshape(z.shape), z, atol=1e-4)


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
def test_auto_regresses_flat_data_and_falls_back_otherwise(simulations):
    task, _, theta, x = simulations
    fit = dict(max_epochs=1, progress_bar=False)
    options = dict(hidden_features=8, num_transforms=1)
    assert (
        NPE(task, **options).fit(jax.random.key(1), theta, x, **fit).network.theta_slope is not None
    )
    # 10 simulations per feature and intercept: 40 for 3 features; 30 train of 33 is too few.
    few = NPE(task, **options).fit(jax.random.key(1), theta[:33], x[:33], **fit)
    assert few.network.theta_slope is None
    assert few.network.theta_scale[...].shape == (DIM,)
    embedded = NPE(task, embedding=nnx.Linear(3, 4, rngs=nnx.Rngs(0)), **options)
    assert embedded.fit(jax.random.key(1), theta, x, **fit).network.theta_slope is None
    per = NPE(task, theta_scaling="per_feature", **options).fit(jax.random.key(1), theta, x, **fit)
    assert per.network.theta_slope is None
    # A box prior keeps per-parameter scaling, unless asked for, or mapped by numpyro's sigmoid.
    box = Task(
        name="box_3x2",
        prior=dist.Uniform(-3.0 * jnp.ones(DIM), 3.0).to_event(1),
        simulator=task.simulator,
        parameter_names=task.parameter_names,
        observation_shape=(3,),
    )
    theta_box = np.clip(theta, -2.9, 2.9)
    assert (
        NPE(box, **options).fit(jax.random.key(1), theta_box, x, **fit).network.theta_slope is None
    )
    for extra in ({"theta_scaling": "linear"}, {"support_transform": "numpyro"}):
        npe = NPE(box, **options, **extra).fit(jax.random.key(1), theta_box, x, **fit)
        assert npe.network.theta_slope is not None


def test_box_edges_are_recognised():
    normal = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
    box = dist.Uniform(jnp.zeros(2), 1.0).to_event(1)
    assert not SupportBijection(normal).has_box_edges
    assert SupportBijection(box).has_box_edges
    assert not SupportBijection(box, "numpyro").has_box_edges
    assert SupportBijection(ap.tasks.get("slcp").prior).has_box_edges
    assert not SupportBijection(dist.LogNormal(jnp.zeros(2), 1.0).to_event(1)).has_box_edges
    mixed = JointPrior([dist.Normal(0.0, 1.0), dist.Uniform(0.0, 1.0)])
    assert SupportBijection(mixed).has_box_edges
    assert not SupportBijection(JointPrior([dist.Normal(0.0, 1.0), dist.LogNormal()])).has_box_edges


def test_linear_scaling_survives_save_load_and_old_runs_load_per_parameter(simulations, tmp_path):
    task, _, theta, x = simulations
    options = dict(hidden_features=8, num_transforms=1)
    fit = dict(max_epochs=2, progress_bar=False)
    linear = NPE(task, theta_scaling="linear", **options).fit(jax.random.key(1), theta, x, **fit)
    linear.save(tmp_path / "linear")
    loaded = NPE.load(tmp_path / "linear", task=task)
    assert loaded.theta_scaling == "linear"
    probe = jnp.asarray(theta[:6])[:, None, :]
    np.testing.assert_array_equal(
        linear.posterior(x[:6]).log_prob(probe), loaded.posterior(x[:6]).log_prob(probe)
    )
    # A run saved before theta_scaling existed has no key: it was standardised per parameter.
    plain = NPE(task, theta_scaling="per_feature", **options).fit(
        jax.random.key(1), theta, x, **fit
    )
    run = plain.save(tmp_path / "old")
    config = json.loads((run / "config.json").read_text())
    del config["theta_scaling"]
    (run / "config.json").write_text(json.dumps(config))
    old = NPE.load(run, task=task)
    np.testing.assert_array_equal(
        plain.posterior(x[:6]).log_prob(probe), old.posterior(x[:6]).log_prob(probe)
    )


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
def test_linear_ensemble_with_balance_saves_loads_and_splits_into_members(simulations, tmp_path):
    task, mixing, theta, x = simulations
    npe = NPE(task, ensemble=2, balance=1.0, theta_scaling="linear", hidden_features=8)
    npe.fit(jax.random.key(4), theta[:1000], x[:1000], max_epochs=2, progress_bar=False)
    for member in npe.members:  # the statistics are shared, the flows differ
        assert member.theta_slope[...].shape == (3, DIM)
        np.testing.assert_array_equal(member.theta_slope[...], npe.members[0].theta_slope[...])
    loaded = NPE.load(npe.save(tmp_path / "ensemble"), task=task)
    probe = jnp.asarray(theta[:5])[:, None, :]
    np.testing.assert_array_equal(
        npe.posterior(x[:5]).log_prob(probe), loaded.posterior(x[:5]).log_prob(probe)
    )
    np.testing.assert_array_equal(
        npe.member(1).posterior(x[:5]).log_prob(probe),
        loaded.member(1).posterior(x[:5]).log_prob(probe),
    )
    # Two epochs from the exact linear-Gaussian start: the draws match the exact posterior.
    draws = np.asarray(npe.posterior(x[:2]).sample(jax.random.key(5), 4000))
    exact = _exact_posterior(mixing, x[:2])
    np.testing.assert_allclose(draws.mean(axis=1), np.asarray(exact.mean), atol=0.03)
    np.testing.assert_allclose(
        np.cov(draws[0].T), np.asarray(exact.covariance_matrix)[0], atol=0.01
    )


def test_explicit_linear_with_few_simulations_warns(simulations):
    task, _, theta, x = simulations
    npe = NPE(task, theta_scaling="linear", hidden_features=8, num_transforms=1)
    with pytest.warns(UserWarning, match="poorly determined"):
        npe.fit(jax.random.key(1), theta[:30], x[:30], max_epochs=1, progress_bar=False)


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
def test_a_failed_refit_keeps_the_labels_of_the_installed_networks(simulations, tmp_path):
    task, _, theta, x = simulations
    npe = NPE(task, theta_scaling="linear", hidden_features=8, num_transforms=1)
    npe.fit(jax.random.key(1), theta[:500], x[:500], max_epochs=1, progress_bar=False)
    npe.x_scaling, npe.theta_scaling = "none", "per_feature"

    def interrupt(initial_state):  # the loop calls it after the statistics are fitted
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        npe.fit(jax.random.key(1), theta[:500], x[:500], max_epochs=1, resume=interrupt)
    loaded = NPE.load(npe.save(tmp_path / "run"), task=task)  # labels match the weights
    assert loaded.theta_scaling == "linear"
    assert loaded.network.theta_slope is not None


def test_bad_theta_scaling_is_rejected():
    task = ap.tasks.get("two_moons")
    with pytest.raises(ValueError, match="theta_scaling: expected one of"):
        NPE(task, theta_scaling="whiten")
    with pytest.raises(ValueError, match="needs embedding=None"):
        NPE(task, theta_scaling="linear", embedding=nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
    task3, _ = _linear_gaussian_task()
    theta, x = task3.simulate(jax.random.key(0), 5)
    npe = NPE(task3, theta_scaling="linear", hidden_features=8, num_transforms=1)
    with pytest.raises(ValueError, match="more training simulations"):
        npe.fit(jax.random.key(1), theta, x, max_epochs=1, validation_fraction=0.2)


def test_posterior_width_is_finite_with_a_degenerate_residual():
    """A parameter fixed by the data (zero residual) gets a tiny but positive scale."""
    z = np.linspace(-1, 1, 50)[:, None]
    u = np.concatenate([2.0 * z, np.sin(7 * z)], axis=1)
    _, _, cholesky = linear_statistics(u, z)
    diagonal = np.diag(np.asarray(cholesky))
    assert np.all(diagonal > 0)
    assert np.all(np.isfinite(diagonal))
    assert diagonal[0] < 1e-2 * diagonal[1]
    assert math.isfinite(float(jnp.sum(jnp.log(diagonal))))
