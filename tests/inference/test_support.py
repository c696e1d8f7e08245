"""The prior-support bijection: the soft interval transform and its selection."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from astroprob.inference import NPE
from astroprob.inference._support import (
    SoftIntervalTransform,
    SupportBijection,
    support_transform,
)
from astroprob.inference.npe import NPE_TRAINING_DEFAULTS
from astroprob.tasks import Task
from astroprob.tasks._priors import EllipticityPrior, JointPrior

LOW, HIGH, MARGIN = -1.0, 3.0, 0.05  # margins of width 0.2: seams at -0.8 and 2.8


def _noisy_task(name, prior):
    """θ of two entries from ``prior``, x | θ ~ N(θ, 0.2² I)."""
    return Task(
        name=name,
        prior=prior,
        simulator=lambda key, theta: theta + 0.2 * jax.random.normal(key, (2,)),
        parameter_names=("a", "b"),
        observation_shape=(2,),
    )


@pytest.fixture(scope="module")
def soft():
    return SoftIntervalTransform(jnp.float32(LOW), jnp.float32(HIGH), MARGIN)


def test_identity_inside_and_bounded_outside(soft):
    inside = jnp.linspace(-0.8, 2.8, 101)
    np.testing.assert_array_equal(soft(inside), inside)
    np.testing.assert_array_equal(soft.log_abs_det_jacobian(inside, inside), 0.0)
    far = jnp.array([-1e6, -50.0, -2.0, 4.0, 50.0, 1e6])
    theta = soft(far)
    assert bool(jnp.all((theta >= LOW) & (theta <= HIGH)))
    # Strictly increasing wherever float32 resolves it (a few margins into each tail).
    assert bool(jnp.all(jnp.diff(soft(jnp.linspace(-1.6, 3.6, 2001))) > 0))


def test_round_trip_and_log_det_against_autodiff(soft):
    # Four margins into each tail θ is exp(-4) of a margin from its bound, and
    # float32 still resolves the distance to ~1e-5 relative.
    u = jnp.concatenate([jnp.linspace(-1.6, -0.8, 40), jnp.linspace(2.8, 3.6, 40)])
    theta = soft(u)
    np.testing.assert_allclose(soft.inv(theta), u, atol=1e-5)
    derivative = jax.vmap(jax.grad(soft))(u)
    np.testing.assert_allclose(
        soft.log_abs_det_jacobian(u, theta), jnp.log(derivative), rtol=1e-4, atol=1e-5
    )


def test_value_and_derivative_are_continuous_at_the_seams(soft):
    eps = 1e-3
    for seam in (LOW + MARGIN * (HIGH - LOW), HIGH - MARGIN * (HIGH - LOW)):
        below, above = soft(jnp.float32(seam - eps)), soft(jnp.float32(seam + eps))
        assert float(above - below) == pytest.approx(2 * eps, rel=1e-2)
        grads = jax.vmap(jax.grad(soft))(jnp.array([seam - eps, seam + eps]))
        np.testing.assert_allclose(grads, 1.0, atol=2e-2)


def test_samples_stay_strictly_inside_and_bounds_invert_to_finite_values(soft):
    theta = soft(jnp.array([-1e30, -1e6, -50.0, 50.0, 1e6, 1e30]))
    assert bool(jnp.all((theta > LOW) & (theta < HIGH)))
    u = soft.inv(jnp.array([LOW, HIGH]))
    assert bool(jnp.all(jnp.isfinite(u)))
    assert float(u[0]) < -10
    assert float(u[1]) > 10


def test_survives_pytree_flattening_and_jit(soft):
    leaves, treedef = jax.tree.flatten(soft)
    rebuilt = jax.tree.unflatten(treedef, leaves)
    u = jnp.array([-3.0, 0.5, 2.9])
    np.testing.assert_array_equal(rebuilt(u), soft(u))
    np.testing.assert_array_equal(jax.jit(lambda t, v: t.inv(t(v)))(soft, u), soft.inv(soft(u)))


def test_margin_is_checked():
    with pytest.raises(ValueError, match="margin"):
        SoftIntervalTransform(0.0, 1.0, 0.5)


def test_support_transform_picks_soft_intervals_per_block():
    prior = JointPrior(
        [
            dist.Uniform(0.5, 6.0),
            dist.LogNormal(0.0, 1.0),
            EllipticityPrior(1.0, 3.0),
            dist.Normal(),
        ]
    )
    bijection = SupportBijection(prior)
    u = jnp.array([[3.0, 0.3, 0.2, -0.4, 1.5], [5.95, -2.0, 3.0, 4.0, -1.0]])
    theta = bijection.to_constrained(u)
    # The interval block is the identity inside its margins; the others keep numpyro's maps.
    assert float(theta[0, 0]) == 3.0
    assert float(theta[1, 0]) < 6.0
    assert float(theta[1, 0]) != 5.95
    np.testing.assert_allclose(theta[:, 1], jnp.exp(u[:, 1]), rtol=1e-6)
    np.testing.assert_array_equal(theta[:, 4], u[:, 4])
    assert bool(jnp.all(bijection.contains(theta)))
    np.testing.assert_allclose(bijection.to_unconstrained(theta), u, rtol=1e-5, atol=1e-5)
    jac = jax.vmap(jax.jacobian(bijection.to_constrained))(u)
    np.testing.assert_allclose(
        bijection.log_abs_det_jacobian(u),
        jnp.linalg.slogdet(jac)[1],
        rtol=1e-4,
        atol=1e-4,
    )


def test_box_prior_uses_soft_interval_and_numpyro_kind_is_kept():
    prior = dist.Uniform(-jnp.ones(3), 1.0).to_event(1)
    assert isinstance(support_transform(prior.support).base_transform, SoftIntervalTransform)
    legacy = SupportBijection(prior, "numpyro")
    np.testing.assert_allclose(legacy.to_constrained(jnp.zeros(3)), 0.0)
    np.testing.assert_allclose(legacy.to_constrained(jnp.full(3, 30.0)), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        SupportBijection(prior, "sigmoid")


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
def test_runs_saved_without_the_key_load_with_numpyro_bijection(tmp_path):
    task = _noisy_task("box_shift", dist.Uniform(-jnp.ones(2), 1.0).to_event(1))
    theta, x = task.simulate(jax.random.key(0), 300)
    with pytest.raises(ValueError, match="support_transform"):
        NPE(task, "mdn", support_transform="sigmoid")
    legacy = NPE(task, "mdn", support_transform="numpyro")
    legacy.fit(jax.random.key(1), theta, x, max_epochs=3, progress_bar=False)
    legacy.save(tmp_path / "legacy")
    reloaded = NPE.load(tmp_path / "legacy", task=task)
    assert reloaded._bijection.kind == "numpyro"
    theta_eval = jnp.array([[0.3, -0.99], [0.999, 0.0]])
    np.testing.assert_array_equal(
        legacy.posterior(jnp.zeros(2)).log_prob(theta_eval),
        reloaded.posterior(jnp.zeros(2)).log_prob(theta_eval),
    )
    npe = NPE(task, "mdn").fit(jax.random.key(1), theta, x, max_epochs=3, progress_bar=False)
    npe.save(tmp_path / "run")
    assert NPE.load(tmp_path / "run", task=task)._bijection.kind == "soft_interval"
    config_path = tmp_path / "run" / "config.json"
    config = json.loads(config_path.read_text())
    del config["support_transform"]
    config_path.write_text(json.dumps(config))
    assert NPE.load(tmp_path / "run", task=task)._bijection.kind == "numpyro"


def test_npe_training_defaults_apply_and_yield_to_options():
    task = _noisy_task("shift", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
    theta, x = task.simulate(jax.random.key(0), 200)
    npe = NPE(task, "mdn").fit(jax.random.key(1), theta, x, max_epochs=1, progress_bar=False)
    assert npe.training_config.batch_size == NPE_TRAINING_DEFAULTS["batch_size"]
    assert npe.training_config.weight_decay == NPE_TRAINING_DEFAULTS["weight_decay"]
    npe.fit(jax.random.key(1), theta, x, max_epochs=1, batch_size=200, progress_bar=False)
    assert npe.training_config.batch_size == 200
    assert npe.training_config.weight_decay == NPE_TRAINING_DEFAULTS["weight_decay"]
    with pytest.raises(TypeError, match="unknown training option"):
        NPE.training_settings(batch=3)


def test_ensemble_members_keep_the_support_transform():
    task = _noisy_task("box_pair", dist.Uniform(-jnp.ones(2), 1.0).to_event(1))
    theta, x = task.simulate(jax.random.key(0), 200)
    npe = NPE(task, "mdn", ensemble=2, support_transform="numpyro")
    npe.fit(jax.random.key(1), theta, x, max_epochs=1, progress_bar=False)
    assert npe.member(1).support_transform == "numpyro"
