"""Tests of the conditional density estimators (NSF coupling/autoregressive, MAF, MDN).

Every estimator is built once with small sizes, its weights are pushed away from
the (identity) initialisation with a fixed key, and everything the tests need is
computed in ONE jitted call per estimator (``jax.jit`` through ``nnx.split`` /
``nnx.merge``, compiled at a low XLA optimisation level: compilation dominates
the cost of these tests, not execution).
"""

import inspect
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from _flow_helpers import perturb, run
from flax import nnx

from astroprob.flows import (
    DENSITY_NAMES,
    MaskedAutoregressiveFlow,
    MixtureDensityNetwork,
    NeuralSplineFlow,
    make_density,
)

CONTEXT_DIM = 2
SMALL = {"hidden_features": 16, "num_hidden_layers": 1}

CASES = {
    "nsf-d1": lambda r: NeuralSplineFlow(1, CONTEXT_DIM, rngs=r, num_transforms=1, **SMALL),
    "nsf-d2": lambda r: NeuralSplineFlow(2, CONTEXT_DIM, rngs=r, num_transforms=2, **SMALL),
    "nsf-d3-random": lambda r: NeuralSplineFlow(
        3, CONTEXT_DIM, rngs=r, num_transforms=2, permutation="random", num_bins=6, **SMALL
    ),
    # The plain-MLP coupling flow, without the affine layer and the LU mixing.
    "nsf-d2-plain": lambda r: NeuralSplineFlow(
        2,
        CONTEXT_DIM,
        rngs=r,
        num_transforms=2,
        conditioner="mlp",
        conditional_affine=False,
        linear_mixing=False,
        **SMALL,
    ),
    "nsf_ar-d1": lambda r: NeuralSplineFlow(
        1, CONTEXT_DIM, rngs=r, num_transforms=1, autoregressive=True, **SMALL
    ),
    "nsf_ar-d2": lambda r: NeuralSplineFlow(
        2, CONTEXT_DIM, rngs=r, num_transforms=2, autoregressive=True, **SMALL
    ),
    "maf-d1": lambda r: MaskedAutoregressiveFlow(1, CONTEXT_DIM, rngs=r, num_transforms=2, **SMALL),
    "maf-d2": lambda r: MaskedAutoregressiveFlow(2, CONTEXT_DIM, rngs=r, num_transforms=2, **SMALL),
    "maf-d3-random": lambda r: MaskedAutoregressiveFlow(
        3, CONTEXT_DIM, rngs=r, num_transforms=2, permutation="random", **SMALL
    ),
    "mdn-d1": lambda r: MixtureDensityNetwork(1, CONTEXT_DIM, rngs=r, num_components=3, **SMALL),
    "mdn-d2": lambda r: MixtureDensityNetwork(2, CONTEXT_DIM, rngs=r, num_components=3, **SMALL),
    "mdn-d3": lambda r: MixtureDensityNetwork(3, CONTEXT_DIM, rngs=r, num_components=3, **SMALL),
}
BIJECTIVE = [name for name in CASES if not name.startswith("mdn")]
LOW_DIM = [name for name in CASES if "-d1" in name or "-d2" in name]
MDN = [name for name in CASES if name.startswith("mdn")]

PERTURBATION = 0.1
NUM_DRAWS = 12_000  # 3 x 12 000 rows > the sampling chunk (8192): the chunked path runs
NUM_CHECKED_DRAWS = 16
# The third row repeats the first: its draws must still be independent of the first's.
DRAW_CONTEXTS = np.array([[0.3, -0.7], [-1.2, 0.5], [0.3, -0.7]], np.float32)
GRID_1D = np.linspace(-10.0, 10.0, 4001, dtype=np.float32)
GRID_2D = np.linspace(-8.0, 8.0, 201, dtype=np.float32)


def build(name, seed=0):
    estimator = perturb(CASES[name](nnx.Rngs(seed)), jax.random.key(seed + 100), PERTURBATION)
    if isinstance(estimator, MixtureDensityNetwork):
        _correlate(estimator)
    return estimator


def _correlate(mdn):
    """Give the MDN components strong correlations and unequal scales.

    With small off-diagonal precision factors, mixing up A^{-1} and A^{-T} when
    sampling would go unnoticed; with these it cannot.
    """
    d, k = mdn.dim, mdn.num_components
    bias = np.array(mdn.network.output_bias[...]).reshape(k, -1)
    bias[:, 1 + d : 1 + 2 * d] += np.linspace(-0.5, 0.5, d)  # log-diagonal
    bias[:, 1 + 2 * d :] += 1.2  # strictly upper-triangular entries
    mdn.network.output_bias[...] = jnp.asarray(bias.reshape(-1))


def make_points(dim, key):
    """Rows inside and outside [-B, B] (B = 3), on the boundary and at 0."""
    special = np.array([-5.0, -3.5, -3.0, 0.0, 3.0, 3.5, 5.0], np.float32)
    rows = np.stack([np.roll(special, i)[:dim] for i in range(special.size)])
    inner = 1.5 * np.asarray(jax.random.normal(key, (25, dim)))
    return jnp.asarray(np.concatenate([rows, inner]), jnp.float32)


def grid_points(dim):
    if dim == 1:
        return jnp.asarray(GRID_1D[:, None])
    g0, g1 = np.meshgrid(GRID_2D, GRID_2D, indexing="ij")
    return jnp.asarray(np.stack([g0.ravel(), g1.ravel()], -1))


def log_prob(estimator, theta, context):
    return estimator.log_prob(theta, context)


def _rows_with_jacobians(fn, x, context):
    """``fn(x, context) -> (y, log_det)`` plus the Jacobian ``dy/dx`` of every row."""

    def column(i):
        e_i = jnp.zeros_like(x).at[:, i].set(1.0)
        primal, tangent = jax.jvp(lambda v: fn(v, context), (x,), (e_i,))
        return primal, tangent[0]

    (y, log_det), jacobian = jax.vmap(column, out_axes=(None, -1))(jnp.arange(x.shape[1]))
    return y, log_det, jacobian


def _compute(estimator, theta, key):
    """Everything the tests need about one estimator, in one compiled function."""
    dim = estimator.dim
    bijective = not isinstance(estimator, MixtureDensityNetwork)
    k_z, k_ctx, k_draw = jax.random.split(key, 3)
    n = theta.shape[0]
    context = jax.random.normal(k_ctx, (n, CONTEXT_DIM))
    out = {"theta": theta, "context": context}
    points, point_contexts = [theta], [context]
    draw_contexts = jnp.asarray(DRAW_CONTEXTS)
    if bijective:
        # Values, log-dets and per-row Jacobians from one JVP per direction: rows do
        # not interact, so perturbing coordinate i of every row gives column i of
        # every row's Jacobian, and the primal outputs come for free.
        z, ld, jac_fwd = _rows_with_jacobians(estimator.transform, theta, context)
        z0 = jax.random.normal(k_z, (n, dim))
        back, ld_back, jac_inv = _rows_with_jacobians(
            estimator.inverse, jnp.concatenate([z, z0]), jnp.tile(context, (2, 1))
        )
        out.update(z=z, ld=ld, theta_back=back[:n], ld_back=ld_back[:n], jac_fwd=jac_fwd)
        out.update(z0=z0, th0=back[n:], ld0=ld_back[n:], jac_inv=jac_inv[n:])
        points.append(back[n:])
        point_contexts.append(context)
        draws, out["draw_lp"] = estimator.sample_and_log_prob(k_draw, draw_contexts, NUM_DRAWS)
    else:
        draws = estimator.sample(k_draw, draw_contexts, NUM_DRAWS)
    out["draws"] = draws
    m = NUM_CHECKED_DRAWS
    points.append(draws[:, :m].reshape(-1, dim))
    point_contexts.append(jnp.repeat(draw_contexts, m, axis=0))
    if dim <= 2:
        grid = grid_points(dim)
        for c in DRAW_CONTEXTS[:2]:
            points.append(grid)
            point_contexts.append(jnp.broadcast_to(jnp.asarray(c), (grid.shape[0], CONTEXT_DIM)))
    lp = estimator.log_prob(jnp.concatenate(points), jnp.concatenate(point_contexts))
    sizes = np.cumsum([p.shape[0] for p in points])[:-1]
    pieces = jnp.split(lp, sizes)
    out["log_prob"] = pieces[0]
    if bijective:
        out["log_prob_th0"] = pieces[1]
    out["draw_lp_ref"] = pieces[1 + bijective].reshape(len(DRAW_CONTEXTS), m)
    if dim <= 2:
        out["grid_lp"] = jnp.stack(pieces[2 + bijective :])
    return out


_RESULTS = {}


def results(name):
    """The perturbed estimator ``name`` and its `_compute` results (cached per session)."""
    if name not in _RESULTS:
        estimator = build(name)
        theta = make_points(estimator.dim, jax.random.key(3))
        out = run(_compute, estimator, theta, jax.random.key(7))
        _RESULTS[name] = (estimator, jax.tree.map(np.asarray, out))
    return _RESULTS[name]


@pytest.fixture
def case(request):
    name = request.param
    return (name, *results(name))


def _trapezoid_weights(grid):
    h = np.diff(grid)
    w = np.zeros_like(grid, dtype=np.float64)
    w[:-1] += h / 2
    w[1:] += h / 2
    return w


def _marginal_pdfs(dim, lp):
    """Per-axis marginal densities on the grid and the total mass."""
    if dim == 1:
        p = np.exp(lp.astype(np.float64))
        return [(GRID_1D, p)], np.sum(_trapezoid_weights(GRID_1D) * p)
    w = _trapezoid_weights(GRID_2D)
    p = np.exp(lp.astype(np.float64)).reshape(GRID_2D.size, GRID_2D.size)
    marg0 = p @ w
    marg1 = w @ p
    return [(GRID_2D, marg0), (GRID_2D, marg1)], w @ marg0


def _ks_distance(grid, pdf, draws):
    cdf = np.concatenate([[0.0], np.cumsum(np.diff(grid) * (pdf[1:] + pdf[:-1]) / 2)])
    empirical = np.searchsorted(np.sort(draws), grid, side="right") / draws.size
    return np.max(np.abs(empirical - cdf))


# --------------------------------------------------------------------------- bijections


@pytest.mark.parametrize("case", BIJECTIVE, indirect=True)
def test_round_trip_data_to_base_and_back(case):
    _, _, r = case
    assert np.all(np.isfinite(r["z"]))
    np.testing.assert_allclose(r["theta_back"], r["theta"], atol=1e-4)
    np.testing.assert_allclose(r["ld_back"], -r["ld"], atol=1e-4)


@pytest.mark.parametrize("case", BIJECTIVE, indirect=True)
def test_log_det_matches_jacobian_both_directions(case):
    _, _, r = case
    for jac, ld in ((r["jac_fwd"], r["ld"]), (r["jac_inv"], r["ld0"])):
        sign, logabsdet = np.linalg.slogdet(jac.astype(np.float64))
        assert np.all(sign != 0)
        np.testing.assert_allclose(ld, logabsdet, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("case", BIJECTIVE, indirect=True)
def test_log_prob_is_base_density_plus_log_det(case):
    _, est, r = case
    base = -0.5 * np.sum(r["z"] ** 2, -1) - 0.5 * est.dim * math.log(2 * math.pi)
    np.testing.assert_allclose(r["log_prob"], base + r["ld"], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("case", BIJECTIVE, indirect=True)
def test_inverse_log_det_gives_log_prob_of_image(case):
    """log q(T^{-1}(z)) = log N(z) - log|det dT^{-1}/dz|, evaluated through log_prob."""
    _, est, r = case
    base = -0.5 * np.sum(r["z0"] ** 2, -1) - 0.5 * est.dim * math.log(2 * math.pi)
    np.testing.assert_allclose(r["log_prob_th0"], base - r["ld0"], atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("case", BIJECTIVE, indirect=True)
def test_sample_and_log_prob_agrees_with_log_prob(case):
    _, _, r = case
    np.testing.assert_allclose(
        r["draw_lp"][:, :NUM_CHECKED_DRAWS], r["draw_lp_ref"], atol=2e-4, rtol=1e-4
    )


def _weight_gradient(estimator, theta, context):
    return nnx.grad(lambda m: -jnp.mean(m.log_prob(theta, context)))(estimator)


@pytest.mark.parametrize("name", ["nsf-d2", "nsf_ar-d2", "maf-d2"])
def test_weights_gradient_is_finite_in_tails_and_on_boundaries(name):
    est = build(name)
    theta = jnp.array([[-7.0, 0.0], [3.0, -3.0], [2.9, 4.0], [0.0, 0.0], [-3.0, 12.0]])
    context = jnp.linspace(-1.0, 1.0, 10).reshape(5, CONTEXT_DIM)
    grads = run(_weight_gradient, est, theta, context)
    leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert sum(float(np.sum(np.abs(g))) for g in leaves) > 0


def _transform_and_log_prob(estimator, theta, context):
    return estimator.transform(theta, context), estimator.log_prob(theta, context)


@pytest.mark.parametrize("name", ["nsf-d3-random", "nsf_ar-d2", "maf-d3-random"])
def test_initialisation_is_identity(name):
    est = CASES[name](nnx.Rngs(3))
    theta = jnp.linspace(-5.0, 5.0, 11 * est.dim).reshape(11, est.dim)
    context = jnp.ones((11, CONTEXT_DIM))
    (z, ld), lp = run(_transform_and_log_prob, est, theta, context)
    # The identity up to the permutations between layers.
    np.testing.assert_allclose(np.sort(z, axis=1), np.sort(theta, axis=1), atol=1e-5)
    np.testing.assert_allclose(ld, 0.0, atol=1e-5)
    base = jax.scipy.stats.norm.logpdf(theta).sum(-1)
    np.testing.assert_allclose(lp, base, rtol=1e-6)


# --------------------------------------------------------------------------- all estimators


@pytest.mark.parametrize("case", LOW_DIM, indirect=True)
def test_density_integrates_to_one(case):
    name, est, r = case
    for lp in r["grid_lp"]:
        _, mass = _marginal_pdfs(est.dim, lp)
        tol = 2e-3 if est.dim == 1 else 1e-2
        assert abs(mass - 1.0) < tol, f"{name}: mass {mass}"


@pytest.mark.parametrize("case", LOW_DIM, indirect=True)
def test_samples_follow_log_prob(case):
    """KS distance between samples and the quadrature CDF of exp(log_prob), per axis."""
    name, est, r = case
    # 99.9% KS critical value for 12 000 draws is 1.95 / sqrt(n) = 0.018.
    for lp, draws in zip(r["grid_lp"], r["draws"][:2], strict=True):
        marginals, _ = _marginal_pdfs(est.dim, lp)
        for axis, (grid, pdf) in enumerate(marginals):
            distance = _ks_distance(grid, pdf, draws[:, axis])
            assert distance < 0.02, f"{name} axis {axis}: KS {distance}"


@pytest.mark.parametrize("case", list(CASES), indirect=True)
def test_sample_shape_and_independence_across_rows(case):
    _, est, r = case
    assert r["draws"].shape == (len(DRAW_CONTEXTS), NUM_DRAWS, est.dim)
    assert np.all(np.isfinite(r["draws"]))
    # Rows 0 and 2 share a context; their draws must differ but agree in law.
    first, third = r["draws"][0], r["draws"][2]
    assert not np.any(np.all(first == third, axis=-1))
    std_err = np.sqrt((first.var(0) + third.var(0)) / NUM_DRAWS)
    assert np.all(np.abs(first.mean(0) - third.mean(0)) < 5 * std_err)


# --------------------------------------------------------------------------- MDN specifics


def _components(estimator, context):
    return estimator._components(context)


def _mdn_reference_log_prob(est, theta, context):
    """Mixture log density from the raw network outputs, with dense float64 algebra."""
    raw = run(_components, est, context)
    log_w, means, log_diag, off = (np.asarray(a, np.float64) for a in raw)
    d = est.dim
    a = np.zeros(log_diag.shape + (d,))
    a[..., np.arange(d), np.arange(d)] = np.exp(log_diag)
    rows, cols = np.triu_indices(d, k=1)
    a[..., rows, cols] = off
    precision = np.swapaxes(a, -1, -2) @ a  # (batch, K, d, d)
    r = np.asarray(theta, np.float64)[:, None, :] - means
    quad = np.einsum("bki,bkij,bkj->bk", r, precision, r)
    log_normal = -0.5 * (d * math.log(2 * math.pi) - np.linalg.slogdet(precision)[1] + quad)
    log_prob = scipy.special.logsumexp(log_w + log_normal, axis=-1)
    return log_prob, np.exp(log_w), means, np.linalg.inv(precision)


@pytest.mark.parametrize("name", MDN)
def test_mdn_log_prob_matches_scipy_mixture(name):
    est = build(name)
    key_t, key_c = jax.random.split(jax.random.key(11))
    theta = jax.random.normal(key_t, (6, est.dim))
    context = jax.random.normal(key_c, (6, CONTEXT_DIM))
    reference, *_ = _mdn_reference_log_prob(est, theta, context)
    np.testing.assert_allclose(run(log_prob, est, theta, context), reference, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", ["mdn-d3"], indirect=True)
def test_mdn_sample_moments_match_mixture(case):
    _, est, r = case
    context = jnp.asarray(DRAW_CONTEXTS[:1])
    _, weights, means, cov = _mdn_reference_log_prob(est, jnp.zeros((1, est.dim)), context)
    weights, means, cov = weights[0], np.asarray(means[0]), cov[0]
    mean = weights @ means
    centred = means - mean
    total_cov = np.einsum("k,kij->ij", weights, cov) + np.einsum(
        "k,ki,kj->ij", weights, centred, centred
    )
    draws = r["draws"][0].astype(np.float64)
    std_err = np.sqrt(np.diag(total_cov) / draws.shape[0])
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * std_err)
    np.testing.assert_allclose(np.cov(draws.T), total_cov, atol=0.05 * np.max(np.diag(total_cov)))


# --------------------------------------------------------------------------- make_density


@pytest.mark.parametrize("name", DENSITY_NAMES)
def test_make_density_rebuilds_from_config(name):
    flow = {"num_transforms": 2, "permutation": "random", "permutation_seed": 3}
    size = {"hidden_features": 8} | ({} if name == "mdn" else flow)
    estimator = perturb(
        make_density(name, 2, CONTEXT_DIM, rngs=nnx.Rngs(0), **size),
        jax.random.key(1),
        PERTURBATION,
    )
    config = json.loads(json.dumps(estimator.config))
    clone = make_density(name, 2, CONTEXT_DIM, rngs=nnx.Rngs(42), **config)
    assert jax.tree.structure(nnx.state(clone)) == jax.tree.structure(nnx.state(estimator))
    theta = jnp.array([[0.1, -0.4], [2.0, 3.5], [-4.0, 0.2]])
    context = jnp.array([[0.5, 0.5], [-1.0, 0.0], [0.0, 2.0]])

    assert nnx.graphdef(clone) == nnx.graphdef(estimator)
    hash(nnx.graphdef(clone))  # usable as a static argument of jax.jit
    expected = run(log_prob, estimator, theta, context)
    assert not np.allclose(run(log_prob, clone, theta, context), expected)
    nnx.update(clone, nnx.state(estimator))
    np.testing.assert_array_equal(run(log_prob, clone, theta, context), expected)
    assert clone.config == estimator.config


@pytest.mark.parametrize("cls", [NeuralSplineFlow, MaskedAutoregressiveFlow, MixtureDensityNetwork])
def test_config_lists_every_hyperparameter(cls):
    est = cls(2, CONTEXT_DIM, rngs=nnx.Rngs(0), hidden_features=4)
    params = inspect.signature(cls.__init__).parameters
    keyword_only = {
        p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY and p != "rngs"
    }
    assert set(est.config) == keyword_only
    for value in est.config.values():
        assert isinstance(value, int | float | str | bool)


def test_make_density_names():
    small = {"hidden_features": 4}
    flow = make_density("nsf_autoregressive", 2, 1, rngs=nnx.Rngs(0), num_transforms=1, **small)
    assert flow.config["autoregressive"] is True
    assert make_density("nsf", 2, 1, rngs=nnx.Rngs(0), **small).config["autoregressive"] is False
    maf = make_density("maf", 2, 1, rngs=nnx.Rngs(0), **small)
    assert isinstance(maf, MaskedAutoregressiveFlow)
    assert isinstance(make_density("mdn", 2, 1, rngs=nnx.Rngs(0), **small), MixtureDensityNetwork)


# --------------------------------------------------------------------------- bad input

KINDS = {
    "nsf": lambda: NeuralSplineFlow(2, CONTEXT_DIM, rngs=nnx.Rngs(0), num_transforms=1, **SMALL),
    "nsf_ar": lambda: NeuralSplineFlow(
        2, CONTEXT_DIM, rngs=nnx.Rngs(0), num_transforms=1, autoregressive=True, **SMALL
    ),
    "maf": lambda: MaskedAutoregressiveFlow(
        2, CONTEXT_DIM, rngs=nnx.Rngs(0), num_transforms=1, **SMALL
    ),
    "mdn": lambda: MixtureDensityNetwork(2, CONTEXT_DIM, rngs=nnx.Rngs(0), **SMALL),
}

_OK_T = jnp.zeros((4, 2))
_OK_C = jnp.zeros((4, CONTEXT_DIM))
_KEY = jax.random.key(0)

BAD_CALLS = {
    "log_prob-theta-1d": (
        lambda e: e.log_prob(jnp.zeros(2), _OK_C),
        r"theta: expected an array of shape \(batch, dim=2\); got shape \(2,\)",
    ),
    "log_prob-theta-3d": (
        lambda e: e.log_prob(jnp.zeros((4, 1, 2)), _OK_C),
        r"theta: expected .*; got shape \(4, 1, 2\)",
    ),
    "log_prob-theta-dim": (
        lambda e: e.log_prob(jnp.zeros((4, 3)), _OK_C),
        r"theta: expected an array of shape \(batch, dim=2\); got shape \(4, 3\)",
    ),
    "log_prob-context-dim": (
        lambda e: e.log_prob(_OK_T, jnp.zeros((4, 5))),
        r"context: expected an array of shape \(batch, context_dim=2\); got shape \(4, 5\)",
    ),
    "log_prob-context-1d": (
        lambda e: e.log_prob(_OK_T, jnp.zeros(2)),
        r"context: expected .*; got shape \(2,\)",
    ),
    "log_prob-batch-mismatch": (
        lambda e: e.log_prob(_OK_T, jnp.zeros((3, CONTEXT_DIM))),
        r"context: expected batch size 4 .*; got 3",
    ),
    "log_prob-complex": (
        lambda e: e.log_prob(_OK_T.astype(jnp.complex64), _OK_C),
        r"theta: expected a real floating-point array; got dtype complex64",
    ),
    "sample-context-1d": (
        lambda e: e.sample(_KEY, jnp.zeros(CONTEXT_DIM), 3),
        r"context: expected an array of shape \(batch, context_dim=2\); got shape \(2,\)",
    ),
    "sample-context-dim": (
        lambda e: e.sample(_KEY, jnp.zeros((4, 3)), 3),
        r"context: expected .*; got shape \(4, 3\)",
    ),
    "sample-zero-samples": (
        lambda e: e.sample(_KEY, _OK_C, 0),
        r"num_samples: expected a positive int; got 0",
    ),
    "sample-negative-samples": (
        lambda e: e.sample(_KEY, _OK_C, -5),
        r"num_samples: expected a positive int; got -5",
    ),
    "sample-bool-samples": (
        lambda e: e.sample(_KEY, _OK_C, True),
        r"num_samples: expected a positive int; got True",
    ),
}

BAD_BIJECTION_CALLS = {
    "transform-theta-dim": (
        lambda e: e.transform(jnp.zeros((4, 1)), _OK_C),
        r"theta: expected an array of shape \(batch, dim=2\); got shape \(4, 1\)",
    ),
    "transform-batch-mismatch": (
        lambda e: e.transform(_OK_T, jnp.zeros((5, CONTEXT_DIM))),
        r"context: expected batch size 4 .*; got 5",
    ),
    "inverse-z-1d": (
        lambda e: e.inverse(jnp.zeros(2), _OK_C),
        r"z: expected an array of shape \(batch, dim=2\); got shape \(2,\)",
    ),
    "inverse-context-dim": (
        lambda e: e.inverse(_OK_T, jnp.zeros((4, 1))),
        r"context: expected .*context_dim=2.*; got shape \(4, 1\)",
    ),
    "sample_and_log_prob-zero": (
        lambda e: e.sample_and_log_prob(_KEY, _OK_C, 0),
        r"num_samples: expected a positive int; got 0",
    ),
}


@pytest.fixture(scope="module")
def kinds():
    return {name: build() for name, build in KINDS.items()}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bad", list(BAD_CALLS))
def test_bad_shapes_raise(kinds, kind, bad):
    call, message = BAD_CALLS[bad]
    with pytest.raises(ValueError, match=message):
        call(kinds[kind])


@pytest.mark.parametrize("kind", ["nsf", "nsf_ar", "maf"])
@pytest.mark.parametrize("bad", list(BAD_BIJECTION_CALLS))
def test_bad_shapes_raise_bijections(kinds, kind, bad):
    call, message = BAD_BIJECTION_CALLS[bad]
    with pytest.raises(ValueError, match=message):
        call(kinds[kind])


def test_bad_shapes_raise_at_trace_time_under_jit(kinds):
    est = kinds["nsf"]
    log_prob = jax.jit(lambda t, c: est.log_prob(t, c))
    with pytest.raises(ValueError, match=r"theta: expected .*; got shape \(4, 3\)"):
        log_prob(jnp.zeros((4, 3)), _OK_C)


def test_integer_inputs_are_cast(kinds):
    est = kinds["nsf"]
    np.testing.assert_allclose(
        run(log_prob, est, np.zeros((4, 2), np.int32), _OK_C),
        run(log_prob, est, _OK_T, _OK_C),
        rtol=1e-6,
    )


BAD_CONSTRUCTORS = {
    "dim-zero": (lambda: NeuralSplineFlow(0, 2, rngs=nnx.Rngs(0)), r"dim: expected a positive"),
    "context-zero": (
        lambda: MaskedAutoregressiveFlow(2, 0, rngs=nnx.Rngs(0)),
        r"context_dim: expected a positive int; got 0",
    ),
    "mdn-dim-negative": (
        lambda: MixtureDensityNetwork(-1, 2, rngs=nnx.Rngs(0)),
        r"dim: expected a positive int; got -1",
    ),
    "transforms-zero": (
        lambda: NeuralSplineFlow(2, 2, rngs=nnx.Rngs(0), num_transforms=0),
        r"num_transforms: expected a positive int; got 0",
    ),
    "bins-too-narrow": (
        lambda: NeuralSplineFlow(2, 2, rngs=nnx.Rngs(0), num_bins=10, min_bin_width=0.1),
        r"min_bin_width: expected",
    ),
    "tail-bound": (
        lambda: NeuralSplineFlow(2, 2, rngs=nnx.Rngs(0), tail_bound=0.0),
        r"tail_bound: expected a positive float; got 0.0",
    ),
    "permutation": (
        lambda: MaskedAutoregressiveFlow(2, 2, rngs=nnx.Rngs(0), permutation="shuffle"),
        r"permutation: expected one of \('reverse', 'random'\); got 'shuffle'",
    ),
    "activation": (
        lambda: NeuralSplineFlow(2, 2, rngs=nnx.Rngs(0), activation="sigmoidal"),
        r"activation: expected one of .*; got 'sigmoidal'",
    ),
    "min-scale": (
        lambda: MaskedAutoregressiveFlow(2, 2, rngs=nnx.Rngs(0), min_scale=0.0),
        r"min_scale: expected in \(0, 1\); got 0.0",
    ),
    "components": (
        lambda: MixtureDensityNetwork(2, 2, rngs=nnx.Rngs(0), num_components=0),
        r"num_components: expected a positive int; got 0",
    ),
    "hidden-layers": (
        lambda: MixtureDensityNetwork(2, 2, rngs=nnx.Rngs(0), num_hidden_layers=0),
        r"num_hidden_layers: expected >= 1; got 0",
    ),
    "unknown-name": (
        lambda: make_density("realnvp", 2, 2, rngs=nnx.Rngs(0)),
        r"name: expected one of \['nsf', 'nsf_autoregressive', 'maf', 'mdn'\]; got 'realnvp'",
    ),
    "conflicting-autoregressive": (
        lambda: make_density("nsf_autoregressive", 2, 2, rngs=nnx.Rngs(0), autoregressive=False),
        r"autoregressive: expected True",
    ),
}


@pytest.mark.parametrize("bad", list(BAD_CONSTRUCTORS))
def test_bad_constructor_arguments_raise(bad):
    build_bad, message = BAD_CONSTRUCTORS[bad]
    with pytest.raises(ValueError, match=message):
        build_bad()
