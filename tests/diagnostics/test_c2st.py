"""Tests of the classifier two-sample test, ``astroprob.diagnostics.c2st``.

Most tests share one input shape (2,000 vs 2,000 samples in 2-D) so that the
kernel compiles once. Expected values come from the Bayes-optimal classifier
(for N(0, I) vs N(mu, I) with equal sizes its accuracy is Phi(|mu| / 2)) and
from scikit-learn run with sbibm's settings on the same data.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.model_selection import KFold

from astroprob.diagnostics import _classifier, c2st

N = 2_000
DIM = 2


def normal_phi(z):
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def gaussians(keys, mean_q, *, n=N, scale_q=1.0):
    """n samples of N(0, I) and n samples of N(mean_q, diag(scale_q**2)), as numpy arrays."""
    mean_q = jnp.asarray(mean_q, jnp.float32)
    p = jax.random.normal(next(keys), (n, mean_q.size))
    q = mean_q + jnp.asarray(scale_q) * jax.random.normal(next(keys), (n, mean_q.size))
    return np.asarray(p, np.float64), np.asarray(q, np.float64)


# -- statistical behaviour -------------------------------------------------------------


def test_identical_distributions_give_chance_level(keys):
    p, q = gaussians(keys, [0.0, 0.0])
    assert c2st(p, q) == pytest.approx(0.5, abs=0.04)


def test_well_separated_distributions_give_one(keys):
    p, q = gaussians(keys, [4.0, 0.0])
    accuracy = c2st(p, q)
    assert accuracy > 0.95
    assert accuracy == pytest.approx(normal_phi(2.0), abs=0.01)  # Bayes: 0.977


def test_moderate_shift_matches_bayes_optimal_accuracy(keys):
    mu = np.array([0.6, 0.8])  # |mu| = 1
    p, q = gaussians(keys, mu)
    accuracy = c2st(p, q)
    # Analytic Bayes-optimal accuracy Phi(|mu|/2) = 0.691; sampling error of the
    # accuracy over 4,000 points is ~0.007.
    assert accuracy == pytest.approx(normal_phi(0.5), abs=0.025)
    # The Bayes classifier (q if x.mu > |mu|^2/2) on these very samples removes the
    # sampling error; a well-trained MLP comes within a fraction of a percent of it.
    oracle = 0.5 * (np.mean(p @ mu <= 0.5) + np.mean(q @ mu > 0.5))
    assert accuracy == pytest.approx(oracle, abs=0.015)


def test_unequal_sample_sizes_give_majority_chance_level(keys):
    """Identical distributions, 3:1 sizes: a classifier can only predict the majority, 0.75."""
    p = np.asarray(jax.random.normal(next(keys), (1_500, 1)))
    q = np.asarray(jax.random.normal(next(keys), (501, 1)))  # 2001 % 5 != 0: padded folds
    assert c2st(p, q) == pytest.approx(1_500 / 2_001, abs=0.03)


def test_swapping_p_and_q_gives_about_the_same(keys):
    p, q = gaussians(keys, [0.6, 0.8])
    assert c2st(p, q) == pytest.approx(c2st(q, p), abs=0.02)


def test_z_scoring_makes_the_result_invariant_to_units(keys):
    p, q = gaussians(keys, [0.6, 0.8])
    scale, offset = np.array([1e-3, 50.0]), np.array([7.0, -3e4])
    assert c2st(scale * p + offset, scale * q + offset) == pytest.approx(c2st(p, q), abs=0.01)
    # The data are already standardised, so skipping z-scoring changes little.
    assert c2st(p, q, z_score=False) == pytest.approx(c2st(p, q), abs=0.02)


# -- differential test against scikit-learn (the sbibm reference) ----------------------


def sbibm_c2st_with_sklearn(p, q, seed):
    """sbibm's ``c2st`` (sbibm/metrics/c2st.py), written out with numpy and sklearn."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neural_network import MLPClassifier

    mean, std = p.mean(axis=0), p.std(axis=0, ddof=1)
    data = np.concatenate([(p - mean) / std, (q - mean) / std])
    target = np.concatenate([np.zeros(len(p)), np.ones(len(q))])
    dim = p.shape[1]
    classifier = MLPClassifier(
        activation="relu",
        hidden_layer_sizes=(10 * dim, 10 * dim),
        max_iter=10_000,
        solver="adam",
        random_state=seed,
    )
    folds = KFold(n_splits=5, shuffle=True, random_state=seed)
    # pyproject turns warnings into errors. A ConvergenceWarning here would mean the
    # reference stopped at max_iter rather than by its tolerance, which would make
    # the comparison meaningless: record it and fail with a clear message instead.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        scores = cross_val_score(classifier, data, target, cv=folds, error_score="raise")
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)], (
        "the sklearn reference did not converge"
    )
    return float(np.mean(scores))


@pytest.mark.parametrize(
    ("mean_q", "scale_q"),
    [
        pytest.param([0.6, 0.8], 1.0, id="shifted-mean"),
        # Equal means, different widths: the Bayes boundary is an ellipse, so a
        # linear (or untrained) classifier would score 0.5.
        pytest.param([0.0, 0.0], [2.0, 1.0], id="wider-q"),
    ],
)
def test_agrees_with_sklearn_mlp_classifier(keys, mean_q, scale_q):
    p, q = gaussians(keys, mean_q, scale_q=scale_q)
    reference = sbibm_c2st_with_sklearn(p, q, seed=1)
    assert reference > 0.6  # the case is not trivial
    assert c2st(p, q, seed=1) == pytest.approx(reference, abs=0.02)


# -- determinism, types and compilation -----------------------------------------------


def test_deterministic_for_a_fixed_seed(keys):
    p, q = gaussians(keys, [0.6, 0.8])
    first = c2st(p, q, seed=3)
    assert isinstance(first, float)
    assert c2st(p, q, seed=3) == first
    assert c2st(jnp.asarray(p), jnp.asarray(q), seed=3) == first  # jax arrays work too
    # The seed matters (split, initialisation, minibatch order), but only a little.
    others = [c2st(p, q, seed=seed) for seed in (4, 5, 6)]
    assert len({first, *others}) > 1
    np.testing.assert_allclose(others, first, atol=0.02)


def test_second_call_with_the_same_shapes_does_not_recompile(keys):
    p, q = gaussians(keys, [0.0, 0.0])
    c2st(p, q, seed=0)
    size = _classifier.cross_validated_accuracy._cache_size()
    p, q = gaussians(keys, [1.0, 0.0])
    c2st(p, q, seed=5, max_iter=5_000)
    assert _classifier.cross_validated_accuracy._cache_size() == size


def test_warns_when_training_hits_max_iter(keys):
    p, q = gaussians(keys, [0.6, 0.8])
    with pytest.warns(RuntimeWarning, match="max_iter=2"):
        accuracy = c2st(p, q, max_iter=2)
    assert 0.5 < accuracy < 0.75


# -- the fold bookkeeping ---------------------------------------------------------------


@pytest.mark.parametrize(("n", "n_folds"), [(2_001, 5), (10, 5), (23, 4), (7, 7)])
def test_fold_layout_matches_sklearn_kfold(n, n_folds):
    layout = _classifier.fold_layout(n, n_folds)
    splits = KFold(n_splits=n_folds).split(np.arange(n))
    for f, (train, test) in enumerate(splits):
        np.testing.assert_array_equal(layout.train_pos[f][layout.train_mask[f]], train)
        np.testing.assert_array_equal(layout.test_pos[f][layout.test_mask[f]], test)
        # Padding, if any, comes last.
        assert layout.train_mask[f].tolist() == sorted(layout.train_mask[f].tolist(), reverse=True)


def test_padding_row_changes_nothing(keys):
    """2,000 real rows + 1 padding row train exactly like the 2,000 rows alone.

    With 2,001 rows the last minibatch holds only the padding row; it must be
    skipped entirely (no Adam step), and the padding values must not matter.
    """
    x = jax.random.normal(next(keys), (2_000, 1))
    y = (jax.random.uniform(next(keys), (2_000,)) < 0.5).astype(jnp.float32)
    key, max_iter = next(keys), jnp.int32(3)
    fit = jax.jit(_classifier._fit_one_fold)
    params, epochs = fit(key, x, y, jnp.ones(2_000, bool), max_iter)
    mask = jnp.ones(2_001, bool).at[-1].set(False)
    for junk in (0.0, 1e6):
        x_pad = jnp.concatenate([x, jnp.full((1, 1), junk)])
        y_pad = jnp.concatenate([y, jnp.ones(1)])
        params_pad, epochs_pad = fit(key, x_pad, y_pad, mask, max_iter)
        assert int(epochs_pad) == int(epochs) == 3
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params_pad), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# -- the classifier's pieces against sklearn's definitions -------------------------------


def epochs_until_stop(losses, max_iter=10_000):
    """Run the stopping rule on a given training-loss curve; return the epochs run."""
    best, count, epoch = jnp.float32(jnp.inf), jnp.int32(0), 0
    while bool(_classifier.keep_training(jnp.int32(epoch), count, jnp.int32(max_iter))):
        best, count = _classifier.update_stopping(best, count, jnp.float32(losses[epoch]))
        epoch += 1
    return epoch


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        # Three improving epochs, then flat: sklearn stops when the count of epochs
        # without improvement exceeds n_iter_no_change=10, i.e. after epoch 3 + 11.
        pytest.param([1.0, 0.9, 0.8] + [0.8] * 100, 14, id="flat"),
        # Improvements smaller than tol=1e-4 do not count.
        pytest.param([1.0] + [1.0 - 5e-5 * k for k in range(1, 100)], 12, id="below-tol"),
        # An improvement by more than tol resets the count.
        pytest.param([1.0] + [1.0] * 8 + [0.5] + [0.5] * 100, 21, id="reset"),
        pytest.param([1.0 - 0.01 * k for k in range(100)], 7, id="max-iter"),
    ],
)
def test_stopping_rule_is_sklearns(losses, expected):
    max_iter = 7 if expected == 7 else 10_000
    assert epochs_until_stop(losses, max_iter) == expected


def test_minibatch_loss_is_sklearns(keys):
    """Mean binary log loss + alpha / 2 * sum of squared weights / batch size (alpha = 1e-4)."""
    params = _classifier._init(next(keys), (3, 30, 30, 1))
    x = jax.random.normal(next(keys), (50, 3))
    y = (jax.random.uniform(next(keys), (50,)) < 0.5).astype(jnp.float32)
    weight = jnp.ones(50).at[40:].set(0.0)  # the last 10 rows are padding

    h = np.asarray(x[:40], np.float64)
    for w, b in params[:-1]:
        h = np.maximum(h @ np.asarray(w, np.float64) + np.asarray(b, np.float64), 0.0)
    w, b = params[-1]
    prob = 1.0 / (1.0 + np.exp(-(h @ np.asarray(w, np.float64) + np.asarray(b, np.float64))[:, 0]))
    target = np.asarray(y[:40])
    log_loss = -np.mean(target * np.log(prob) + (1.0 - target) * np.log(1.0 - prob))
    l2 = sum(float(np.sum(np.asarray(w, np.float64) ** 2)) for w, _ in params)
    expected = log_loss + 0.5 * 1e-4 * l2 / 40

    loss = _classifier._batch_loss(params, x, y, weight)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_initialisation_is_glorot_uniform(keys):
    params = _classifier._init(next(keys), (4, 40, 40, 1))
    assert [(w.shape, b.shape) for w, b in params] == [
        ((4, 40), (40,)),
        ((40, 40), (40,)),
        ((40, 1), (1,)),
    ]
    for (w, b), (fan_in, fan_out) in zip(params, [(4, 40), (40, 40), (40, 1)], strict=True):
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # sklearn, for ReLU networks
        values = np.concatenate([np.ravel(w), np.ravel(b)])
        assert np.abs(values).max() <= bound
        assert np.abs(values).max() > 0.8 * bound
        assert abs(values.mean()) < 0.2 * bound


def test_fold_accuracies_count_only_real_held_out_samples(keys):
    """2,001 samples in 5 folds: 401 + 4 x 400 held out; each accuracy is k / fold size."""
    x = jax.random.normal(next(keys), (2_001, 1))
    y = jnp.concatenate([jnp.zeros(1_000), jnp.ones(1_001)])
    layout = _classifier.fold_layout(2_001, 5)
    accuracy, _ = _classifier.cross_validated_accuracy(
        next(keys), x, y, *layout, jnp.asarray(50, jnp.int32)
    )
    correct = np.asarray(accuracy, np.float64) * np.array([401, 400, 400, 400, 400])
    np.testing.assert_allclose(correct, np.round(correct), atol=1e-3)


# -- bad input ---------------------------------------------------------------------------

GOOD = np.random.default_rng(0).normal(size=(20, 2))


def with_value(array, value):
    array = array.copy()
    array[3, 1] = value
    return array


def bad(case_id, change, error, match):
    return pytest.param(change, error, match, id=case_id)


BAD_INPUTS = [
    bad("p-rank-1", {"samples_p": GOOD[:, 0]}, ValueError,
        r"samples_p: expected a 2-D .*got shape \(20,\)"),
    bad("q-rank-3", {"samples_q": GOOD[None]}, ValueError,
        r"samples_q: expected a 2-D .*got shape \(1, 20, 2\)"),
    bad("q-scalar", {"samples_q": np.float64(1.0)}, ValueError,
        r"samples_q: expected a 2-D .*got shape \(\)"),
    bad("dim-mismatch", {"samples_q": GOOD[:, :1]}, ValueError,
        r"samples_q: expected the same dim as samples_p \(2\); got shape \(20, 1\)"),
    bad("zero-dim", {"samples_p": GOOD[:, :0], "samples_q": GOOD[:, :0]}, ValueError,
        r"samples_p: expected dim >= 1; got shape \(20, 0\)"),
    bad("p-too-few", {"samples_p": GOOD[:4]}, ValueError,
        r"samples_p: expected at least n_folds=5 samples; got 4"),
    bad("q-too-few-for-folds", {"samples_q": GOOD[:9], "n_folds": 10}, ValueError,
        r"samples_q: expected at least n_folds=10 samples; got 9"),
    bad("p-nan", {"samples_p": with_value(GOOD, np.nan)}, ValueError,
        r"samples_p: expected finite values; got NaN or inf in 1 sample"),
    bad("q-inf-jax", {"samples_q": jnp.asarray(with_value(GOOD, -np.inf))}, ValueError,
        r"samples_q: expected finite values; got NaN or inf"),
    bad("p-constant-column", {"samples_p": GOOD * [1.0, 0.0]}, ValueError,
        r"samples_p: expected a non-zero standard deviation .*got zero in dimension\(s\) \[1\]"),
    bad("p-strings", {"samples_p": GOOD.astype(str)}, TypeError,
        r"samples_p: expected a real-valued numeric array; got dtype <U"),
    bad("q-complex", {"samples_q": GOOD + 1j}, TypeError,
        r"samples_q: expected a real-valued numeric array; got dtype complex128"),
    bad("one-fold", {"n_folds": 1}, ValueError,
        r"n_folds: expected an integer >= 2; got 1"),
    # Under pytest's jaxtyping hook the annotation check answers first; both name n_folds.
    bad("float-folds", {"n_folds": 5.0}, TypeError, r"n_folds"),
    bad("zero-max-iter", {"max_iter": 0}, ValueError,
        r"max_iter: expected an integer >= 1; got 0"),
    bad("bool-seed", {"seed": True}, TypeError,
        r"seed: expected an integer; got True"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "error", "match"), BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(change, error, match):
    kwargs = {"samples_p": GOOD, "samples_q": GOOD + 1.0} | change
    with pytest.raises(error, match=match):
        c2st(**kwargs)


def test_constant_column_is_fine_without_z_scoring(keys):
    p, q = gaussians(keys, [3.0, 0.0])
    p[:, 1] = q[:, 1] = 0.0
    with pytest.raises(ValueError, match="zero in dimension"):
        c2st(p, q)
    assert c2st(p, q, z_score=False) == pytest.approx(normal_phi(1.5), abs=0.02)  # 0.933
