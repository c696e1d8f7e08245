"""Balanced NPE: the loss carries exactly the balancing penalty of Delaunoy et al. (2023)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy.special import expit

from astroprob.inference import NPE
from astroprob.inference._balance import balancing_violation
from astroprob.inference.npe import npe_losses
from astroprob.tasks import Task

LAMBDA = 10.0
OPTIONS = {"num_components": 2, "hidden_features": 16}
TRAINING = {"max_epochs": 3, "batch_size": 50, "learning_rate": 3e-3, "progress_bar": False}


def _box_task():
    """θ ~ U(-2, 2)², x | θ ~ N(θ, 0.3² I): the flow works in u = T⁻¹(θ) (soft interval)."""
    return Task(
        name="box_balanced",
        prior=dist.Uniform(-2.0 * jnp.ones(2), 2.0).to_event(1),
        simulator=lambda key, theta: theta + 0.3 * jax.random.normal(key, (2,)),
        parameter_names=("a", "b"),
        observation_shape=(2,),
    )


@pytest.fixture(scope="module")
def task():
    return _box_task()


@pytest.fixture(scope="module")
def data(task):
    return task.simulate(jax.random.key(0), 400)


@pytest.fixture(scope="module")
def balanced(task, data):
    return NPE(task, "mdn", balance=LAMBDA, **OPTIONS).fit(jax.random.key(1), *data, **TRAINING)


def _sigmoid(z):
    return expit(z)  # no overflow warning where log q - log p is very negative


def test_balancing_term_matches_a_hand_computation_in_parameter_space(balanced, task):
    theta, x = task.simulate(jax.random.key(2), 64)
    network, bijection = balanced.network, balanced._bijection
    u = bijection.to_unconstrained(theta)
    log_prior_u = task.prior.log_prob(theta) + bijection.log_abs_det_jacobian(u)
    batch = (u, x, log_prior_u)

    plain = np.asarray(npe_losses(network, batch, 0.0))
    np.testing.assert_array_equal(plain, -np.asarray(network.log_prob(u, x)))
    penalised = np.asarray(npe_losses(network, batch, LAMBDA), dtype=np.float64)
    extra = penalised - plain
    # One penalty per minibatch, up to the float32 rounding of the losses it is added to.
    ulp = np.finfo(np.float32).eps * np.abs(penalised).max()
    np.testing.assert_allclose(extra, extra[0], rtol=0, atol=2 * ulp)

    # By hand, with densities of θ itself: the Jacobians of θ = T(u) cancel in q/p.
    posterior = balanced.posterior(x)
    theta_marginal = np.roll(np.asarray(theta), 1, axis=0)  # pairs (θ_{i-1}, x_i)
    log_q = np.asarray(posterior.log_prob(theta), dtype=np.float64)
    log_q_marginal = np.asarray(posterior.log_prob(theta_marginal), dtype=np.float64)
    log_p = np.asarray(task.prior.log_prob(theta), dtype=np.float64)
    log_p_marginal = np.asarray(task.prior.log_prob(theta_marginal), dtype=np.float64)
    violation = (
        _sigmoid(log_q - log_p).mean() + _sigmoid(log_q_marginal - log_p_marginal).mean() - 1.0
    )
    assert abs(violation) > 1e-3  # a few epochs in, the classifier is not balanced yet
    np.testing.assert_allclose(extra.mean(), LAMBDA * violation**2, rtol=1e-4)
    joint, marginal = jnp.asarray(log_q - log_p), jnp.asarray(log_q_marginal - log_p_marginal)
    np.testing.assert_allclose(balancing_violation(joint, marginal), violation, atol=1e-6)
    # Negative control: without shuffling θ the "marginal" term is the joint one again.
    unshuffled = 2 * _sigmoid(log_q - log_p).mean() - 1.0
    assert abs(LAMBDA * unshuffled**2 - extra.mean()) > 1e-3 * abs(extra.mean())


def test_balance_changes_training_and_zero_is_plain_npe(task, data, balanced):
    plain = NPE(task, "mdn", **OPTIONS).fit(jax.random.key(1), *data, **TRAINING)
    zero = NPE(task, "mdn", balance=0.0, **OPTIONS).fit(jax.random.key(1), *data, **TRAINING)
    assert zero.history.train_loss == plain.history.train_loss
    assert zero.history.validation_loss == plain.history.validation_loss
    assert balanced.history.train_loss != plain.history.train_loss


def test_balance_is_saved_and_loaded(balanced, task, tmp_path):
    balanced.save(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["balance"] == LAMBDA
    loaded = NPE.load(tmp_path / "run", task=task)
    assert loaded.balance == LAMBDA
    assert "balance=10" in repr(loaded)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_balance_raises(task, bad):
    with pytest.raises(ValueError, match="balance: expected a finite number >= 0"):
        NPE(task, balance=bad)


@pytest.mark.parametrize("bad", ["100", True])
def test_balance_of_the_wrong_type_raises(task, bad):
    with pytest.raises(TypeError, match="balance"):
        NPE(task, balance=bad)


@pytest.mark.slow
def test_balancing_makes_an_overfitted_posterior_more_conservative():
    # 100 simulations, a large flow, no weight decay, no early stopping and numpyro's
    # sigmoid bijection: plain NPE overfits and is overconfident (the default soft
    # interval bijection overfits far less here, leaving nothing to correct). On
    # held-out simulations the balanced estimator's implied classifier
    # d = σ(log q(θ|x) − log p(θ)) is closer to balance,
    # E_joint[d] + E_marginal[d] = 1, and its posteriors are wider.
    task = _box_task()
    theta, x = task.simulate(jax.random.key(10), 100)
    theta_test, x_test = task.simulate(jax.random.key(11), 2000)
    theta_marginal = jnp.roll(theta_test, 1, axis=0)
    log_p = np.asarray(task.prior.log_prob(theta_test))
    log_p_marginal = np.asarray(task.prior.log_prob(theta_marginal))
    options = {"max_epochs": 300, "patience": 300, "batch_size": 20, "weight_decay": 0.0}
    options["progress_bar"] = False
    violations, spreads = [], []
    # lambda = 1000: at the papers' 100 the effect on this 100-simulation problem depends
    # on the training seed (violation 0.20 -> 0.22, 0.28 -> 0.12, 0.08 -> 0.22 for seeds
    # 12-14); at 1000 it holds for all three (0.02-0.03, spreads 2.2-3.2 times wider).
    for balance in (0.0, 1000.0):
        npe = NPE(
            task,
            "nsf",
            balance=balance,
            support_transform="numpyro",
            # Per-parameter z-scores, as designed: the linear standardisation that "auto"
            # picks here (no box edges under the sigmoid) starts the flow at a good
            # linear-Gaussian posterior, and the plain estimator overfits less.
            theta_scaling="per_feature",
            hidden_features=64,
            num_transforms=3,
        )
        npe.fit(jax.random.key(12), theta, x, **options)
        posterior = npe.posterior(x_test)
        log_q = np.asarray(posterior.log_prob(theta_test))
        log_q_marginal = np.asarray(posterior.log_prob(theta_marginal))
        violation = (
            _sigmoid(log_q - log_p).mean() + _sigmoid(log_q_marginal - log_p_marginal).mean() - 1
        )
        violations.append(abs(violation))
        samples = np.asarray(posterior.sample(jax.random.key(13), 300))
        spreads.append(samples.std(axis=1).mean())
    assert violations[1] < 0.7 * violations[0]
    assert spreads[1] > 1.2 * spreads[0]
