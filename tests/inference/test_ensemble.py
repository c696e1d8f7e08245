"""Deep ensembles of NPE: the mixture posterior, per-member training, summary, save/load."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from flax import nnx

from astroprob.inference import NPE
from astroprob.inference.npe import member_key
from astroprob.tasks import Task

NOISE = 0.5
OPTIONS = {"num_components": 2, "hidden_features": 16}
TRAINING = {
    "max_epochs": 12,
    "patience": 2,
    "learning_rate": 3e-3,
    "batch_size": 50,
    "progress_bar": False,
}


def _task():
    """θ ~ N(0, I₂), x | θ ~ N(θ, 0.5² I)."""
    return Task(
        name="gauss_linear_ensemble",
        prior=dist.Normal(jnp.zeros(2), 1.0).to_event(1),
        simulator=lambda key, theta: theta + NOISE * jax.random.normal(key, (2,)),
        parameter_names=("a", "b"),
        observation_shape=(2,),
    )


@pytest.fixture(scope="module")
def task():
    return _task()


@pytest.fixture(scope="module")
def data(task):
    return task.simulate(jax.random.key(0), 400)


@pytest.fixture(scope="module")
def single(task, data):
    return NPE(task, "mdn", **OPTIONS).fit(jax.random.key(1), *data, **TRAINING)


@pytest.fixture(scope="module")
def ensemble(task, data):
    return NPE(task, "mdn", ensemble=3, **OPTIONS).fit(jax.random.key(1), *data, **TRAINING)


@pytest.fixture(scope="module")
def members(ensemble):
    return [ensemble.member(k) for k in range(3)]


X_OBS = np.array([[0.3, -0.8], [1.5, 0.2]], dtype=np.float32)


def _weights(network):
    return jax.tree.leaves(jax.tree.map(np.asarray, nnx.state(network, nnx.Param)))


def test_mixture_log_prob_is_log_mean_exp_of_members(ensemble, members):
    theta = jax.random.normal(jax.random.key(2), (2, 7, 2))
    mixture = np.asarray(ensemble.posterior(X_OBS).log_prob(theta))
    each = np.stack([np.asarray(m.posterior(X_OBS).log_prob(theta)) for m in members])
    expected = np.logaddexp.reduce(each.astype(np.float64), axis=0) - np.log(3)
    np.testing.assert_allclose(mixture, expected, rtol=1e-5, atol=1e-5)
    # Negative controls: the members differ, so neither one member nor the mean of
    # log-densities is the mixture.
    assert np.abs(each[0] - each[1]).max() > 1e-3
    assert np.abs(mixture - each.mean(axis=0)).max() > 1e-4


def test_members_train_separately_and_stop_on_their_own(ensemble, single):
    histories = ensemble.history.members
    assert len(histories) == 3
    for h in histories:
        # Each member kept its best epoch and stopped `patience` epochs after it.
        assert h.best_epoch == int(np.argmin(h.validation_loss))
        if h.stopped_early:
            assert len(h.validation_loss) == h.best_epoch + 1 + TRAINING["patience"]
    assert len({tuple(h.validation_loss) for h in histories}) == 3
    # The ensemble's curve summarises the members' best losses.
    last = np.mean([h.best_validation_loss for h in histories])
    assert ensemble.history.validation_loss[-1] == pytest.approx(last)
    # Member 0 is the single NPE with the same key, frozen when it stopped.
    np.testing.assert_allclose(
        histories[0].validation_loss, single.history.validation_loss, rtol=1e-5
    )
    for a, b in zip(_weights(ensemble.members[0]), _weights(single.network), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(_weights(ensemble.members[1]), _weights(single.network), strict=True):
        assert np.abs(a - b).max() > 1e-3


def test_ensemble_of_one_is_exactly_the_single_npe(task, data, single, tmp_path):
    one = NPE(task, "mdn", ensemble=1, **OPTIONS).fit(jax.random.key(1), *data, **TRAINING)
    one = NPE.load(one.save(tmp_path / "one"), task=task)
    assert one.ensemble == 1
    assert one.history.members[0].validation_loss == single.history.validation_loss
    for a, b in zip(_weights(one.members[0]), _weights(single.network), strict=True):
        np.testing.assert_array_equal(a, b)
    key = jax.random.key(3)
    np.testing.assert_array_equal(
        one.posterior(X_OBS).sample(key, 50), single.posterior(X_OBS).sample(key, 50)
    )
    theta = jax.random.normal(key, (2, 5, 2))
    np.testing.assert_array_equal(
        one.posterior(X_OBS).log_prob(theta), single.posterior(X_OBS).log_prob(theta)
    )


def test_each_sample_comes_from_one_uniformly_drawn_member(ensemble, members):
    key, n = jax.random.key(4), 3000
    posterior = ensemble.posterior(X_OBS)
    samples = np.asarray(posterior.sample(key, n))
    labels = np.asarray(posterior.last_members)
    assert samples.shape == (2, n, 2)
    assert labels.shape == (2, n)
    counts = np.stack([(labels == k).sum(axis=1) for k in range(3)])
    # Binomial(3000, 1/3): sd 25.8; 5 sd bounds.
    assert np.all(np.abs(counts - n / 3) < 5 * np.sqrt(n * 2 / 9))
    for k in range(3):
        member = np.asarray(members[k].posterior(X_OBS).sample(member_key(key, k), n))
        np.testing.assert_allclose(samples[labels == k], member[labels == k], rtol=1e-5)
        assert np.abs(samples[labels != k] - member[labels != k]).max() > 1e-2


def test_summary_splits_the_spread_into_aleatoric_and_epistemic(ensemble, single):
    posterior = ensemble.posterior(X_OBS)
    samples = np.asarray(posterior.sample(jax.random.key(5), 6000), dtype=np.float64)
    labels = np.asarray(posterior.last_members)
    table = posterior.summary()
    assert table.meta["num_members"] == 3
    for i in range(2):
        means = np.stack([samples[i][labels[i] == k].mean(axis=0) for k in range(3)])
        variances = np.stack([samples[i][labels[i] == k].var(axis=0, ddof=1) for k in range(3)])
        for j, name in enumerate(("a", "b")):
            epistemic = table[f"{name}_std_epistemic"][i]
            aleatoric = table[f"{name}_std_aleatoric"][i]
            assert epistemic == pytest.approx(means[:, j].std(), rel=1e-4)
            assert aleatoric == pytest.approx(np.sqrt(variances[:, j].mean()), rel=1e-4)
            # Law of total variance, up to sampling noise of the member shares.
            total = table[f"{name}_std"][i]
            assert total**2 == pytest.approx(aleatoric**2 + epistemic**2, rel=0.02)
            assert epistemic > 0
    posterior.sample(jax.random.key(5), 10)
    assert posterior.last_members.shape == (2, 10)
    assert ensemble.posterior(X_OBS[0]).last_members is None
    # A single estimator's summary has no member columns.
    assert "a_std_epistemic" not in single.posterior(X_OBS).summary().colnames


def test_save_load_round_trip_is_bit_identical(ensemble, task, tmp_path):
    ensemble.save(tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["ensemble"] == 3
    assert len(config["history"]["members"]) == 3
    loaded = NPE.load(tmp_path / "run", task=task)
    assert loaded.ensemble == 3
    for net_a, net_b in zip(ensemble.members, loaded.members, strict=True):
        for a, b in zip(_weights(net_a), _weights(net_b), strict=True):
            np.testing.assert_array_equal(a, b)
    key, theta = jax.random.key(6), jax.random.normal(jax.random.key(7), (2, 4, 2))
    np.testing.assert_array_equal(
        ensemble.posterior(X_OBS).sample(key, 20), loaded.posterior(X_OBS).sample(key, 20)
    )
    np.testing.assert_array_equal(
        ensemble.posterior(X_OBS).log_prob(theta), loaded.posterior(X_OBS).log_prob(theta)
    )
    assert loaded.history.members[2].validation_loss == ensemble.history.members[2].validation_loss


def test_loading_weights_of_another_ensemble_size_fails(ensemble, task, tmp_path):
    ensemble.save(tmp_path / "run")
    path = tmp_path / "run" / "config.json"
    config = json.loads(path.read_text())
    config["ensemble"] = 2
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="expected shape"):
        NPE.load(tmp_path / "run", task=task)


@pytest.mark.parametrize("bad", [0, -2])
def test_bad_ensemble_sizes_raise(task, bad):
    with pytest.raises(ValueError, match="ensemble: expected None or at least 1 member"):
        NPE(task, ensemble=bad)


@pytest.mark.parametrize("bad", [2.5, True, "3"])
def test_ensemble_sizes_of_the_wrong_type_raise(task, bad):
    with pytest.raises(TypeError, match="ensemble"):
        NPE(task, ensemble=bad)


def test_ensemble_exposes_members_not_one_network(ensemble, single):
    with pytest.raises(RuntimeError, match="ensemble of 3 networks"):
        _ = ensemble.network
    with pytest.raises(ValueError, match=r"k: expected a member index in \[0, 3\)"):
        ensemble.member(3)
    assert len(single.members) == 1
    assert "ensemble=3" in repr(ensemble)
