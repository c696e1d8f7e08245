"""Last-layer Laplace BNNs: exact linear-Gaussian algebra, epistemic growth, save/load."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from astroprob.inference.bnn import (
    BayesianClassifier,
    BayesianRegressor,
    classification_ggn,
    laplace_posterior,
    mackay_prior_precision,
)

NOISE = 0.1


def _sine(key, n):
    k1, k2 = jax.random.split(key)
    x = np.asarray(jax.random.uniform(k1, (n, 1), minval=-1.0, maxval=1.0), np.float32)
    y = np.sin(3 * x) + NOISE * np.asarray(jax.random.normal(k2, (n, 1)), np.float32)
    return x, y


@pytest.fixture(scope="module")
def regressor():
    x, y = _sine(jax.random.key(0), 1500)
    reg = BayesianRegressor(("y",), hidden=32, depth=2)
    return reg.fit(jax.random.key(1), x, y, max_epochs=80, learning_rate=3e-3, progress_bar=False)


# ------------------------------------------------------------------ pure algebra
def test_classification_ggn_is_the_hessian_of_a_linear_softmax_layer():
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    phi = jax.random.normal(k1, (30, 4))
    weight = 0.5 * jax.random.normal(k2, (4, 3))
    labels = jax.random.randint(k3, (30,), 0, 3)

    def loss(w):
        logits = phi @ w.reshape(4, 3)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()

    hessian = jax.jit(jax.hessian(loss))(weight.ravel())
    ggn = jax.jit(classification_ggn)(phi, jax.nn.softmax(phi @ weight, axis=-1))
    np.testing.assert_allclose(ggn, hessian, atol=1e-4)
    # Negative control: transposing the weight layout breaks the agreement.
    assert (
        np.abs(ggn - hessian.reshape(4, 3, 4, 3).transpose(1, 0, 3, 2).reshape(12, 12)).max() > 0.1
    )


def test_laplace_posterior_is_bayesian_linear_regression():
    k1, k2 = jax.random.split(jax.random.key(5))
    phi = np.asarray(jax.random.normal(k1, (200, 5)), np.float64)
    w_true = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    y = phi @ w_true + 0.3 * np.asarray(jax.random.normal(k2, (200,)))
    lam, sigma2 = 2.0, 0.09
    precision = phi.T @ phi / sigma2 + lam * np.eye(5)
    scale, used = laplace_posterior(phi.T @ phi / sigma2, np.zeros(5), prior_precision=lam)
    assert used == lam
    np.testing.assert_allclose(scale @ scale.T, np.linalg.inv(precision), rtol=1e-8)
    # Posterior mean of Bayesian linear regression, for use in the evidence check below.
    mean = np.linalg.solve(precision, phi.T @ y / sigma2)
    assert np.abs(mean - w_true).max() < 0.15


def test_mackay_precision_maximises_the_laplace_evidence():
    h = np.array([0.01, 0.5, 3.0, 40.0, 900.0])
    w2 = 2.5

    def log_evidence(lam):  # the λ-dependent part for fixed MAP weights
        return -0.5 * lam * w2 + 0.5 * len(h) * np.log(lam) - 0.5 * np.sum(np.log(h + lam))

    lam = mackay_prior_precision(h, w2)
    grid = np.exp(np.linspace(np.log(lam) - 3, np.log(lam) + 3, 601))
    best = grid[np.argmax([log_evidence(g) for g in grid])]
    assert abs(np.log(best / lam)) < 0.011
    with pytest.raises(ValueError, match="weight_norm2"):
        mackay_prior_precision(h, 0.0)


# ------------------------------------------------------------------ regressor
def test_regression_mean_and_in_distribution_coverage(regressor):
    x, y = _sine(jax.random.key(6), 4000)
    pred = regressor.predict(x)
    assert np.sqrt(np.mean((pred.mean - np.sin(3 * x)) ** 2)) < 0.05
    np.testing.assert_allclose(pred.std**2, pred.aleatoric_std**2 + pred.epistemic_std**2)
    # Inside the data the noise dominates: the learned σ is the true one, and the
    # predictive ±1σ interval covers 68 % of fresh data.
    assert abs(np.median(pred.aleatoric_std) / NOISE - 1.0) < 0.15
    inside = np.mean(np.abs(y - pred.mean) < pred.std)
    assert abs(inside - 0.683) < 0.03, inside


def test_epistemic_spread_grows_away_from_the_data_and_not_for_a_point_estimate(regressor):
    near = np.linspace(-0.9, 0.9, 19, dtype=np.float32)[:, None]
    far = np.concatenate([np.linspace(-4, -3, 5), np.linspace(3, 4, 5)]).astype(np.float32)[:, None]
    bayes_near = regressor.predict(near).epistemic_std
    bayes_far = regressor.predict(far).epistemic_std
    assert np.all(bayes_near > 0)
    assert bayes_far.min() > 10 * bayes_near.max(), (bayes_far.min(), bayes_near.max())
    # Negative control: the same network as a point estimate has no epistemic spread at all.
    point = regressor.point_estimate()
    np.testing.assert_array_equal(point.predict(far).epistemic_std, 0.0)
    np.testing.assert_array_equal(point.predict(far).mean, regressor.predict(far).mean)
    assert not point.predict(far).epistemic_std.min() > 10 * bayes_near.max()


def test_regressor_sampling_and_save_load_round_trip(regressor, tmp_path):
    x = np.linspace(-2, 2, 9, dtype=np.float32)[:, None]
    regressor.save(tmp_path / "reg")
    loaded = BayesianRegressor.load(tmp_path / "reg")
    a, b = regressor.predict(x), loaded.predict(x)
    for field in ("mean", "aleatoric_std", "epistemic_std"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert loaded.fitted_prior_precision == regressor.fitted_prior_precision
    draws = loaded.sample(jax.random.key(7), x[:2], 20_000)
    assert draws.shape == (2, 20_000, 1)
    np.testing.assert_allclose(draws.std(axis=1), a.std[:2], rtol=0.03)


# ------------------------------------------------------------------ classifier
@pytest.mark.slow
def test_bayesian_classifier_fit_is_close_to_bayes_optimal():
    k1, k2 = jax.random.split(jax.random.key(2))
    labels = np.asarray(jax.random.bernoulli(k1, 0.5, (3000,))).astype(np.int32)
    x = (2 * labels - 1)[:, None] + np.asarray(jax.random.normal(k2, (3000, 1)), np.float32)
    clf = BayesianClassifier(2, hidden=16, depth=1, num_draws=50)
    clf.fit(jax.random.key(3), x, labels, max_epochs=30, learning_rate=3e-3, progress_bar=False)
    grid = np.linspace(-3, 3, 13, dtype=np.float32)[:, None]
    bayes = 1.0 / (1.0 + np.exp(-2 * grid[:, 0]))
    assert np.abs(clf.predict_proba(grid)[:, 1] - bayes).max() < 0.05
    assert np.all(clf.predict_proba_draws(grid).std(axis=0)[:, 1] > 0)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: BayesianRegressor(0), "outputs"),
        (lambda: BayesianRegressor(1, depth=-1), "depth"),
        (
            lambda: BayesianRegressor(2).fit(
                jax.random.key(0), jnp.ones((10, 1)), jnp.ones((10, 3))
            ),
            "y: expected shape",
        ),
    ],
)
def test_bad_input_raises_a_clear_error(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()
