"""Unit tests of the building blocks: RQ splines, MADE masks, row chunking."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import astroprob.flows._flow as flow_module
from astroprob.flows import NeuralSplineFlow
from astroprob.flows._affine import ConditionalAffine
from astroprob.flows._chunks import map_rows_in_chunks, map_samples_in_chunks
from astroprob.flows._linear import LULinear
from astroprob.flows._made import MADE, made_masks
from astroprob.flows._residual import ResidualConditioner
from astroprob.flows._splines import (
    UNROLLED_MIN_VALUES,
    _spline,
    rq_knots,
    rq_spline,
    rq_spline_forward,
    rq_spline_inverse,
    rq_spline_inverse_per_bin,
    split_spline_params,
)

B = 3.0
K = 8
SETTINGS = {"min_bin_width": 1e-3, "min_bin_height": 1e-3, "min_derivative": 1e-3}


def _knots(params):
    w, h, d = split_spline_params(params, K)
    return rq_knots(w, h, d, tail_bound=B, **SETTINGS)


@jax.jit
def _spline_checks(params, x):
    """Forward, inverse, and autodiff derivatives of both, elementwise."""
    knots = _knots(params)
    y, ld = rq_spline_forward(x, knots, tail_bound=B)
    x_back, ld_back = rq_spline_inverse(y, knots, tail_bound=B)

    def fwd(xi, p):
        return rq_spline_forward(xi, _knots(p), tail_bound=B)[0]

    def inv(yi, p):
        return rq_spline_inverse(yi, _knots(p), tail_bound=B)[0]

    dy_dx = jax.vmap(jax.grad(fwd))(x, params)
    dx_dy = jax.vmap(jax.grad(inv))(y, params)
    # Gradients w.r.t. the spline parameters must be finite everywhere (tails, knots).
    grad_params = jax.grad(lambda p: jnp.sum(rq_spline_forward(x, _knots(p), tail_bound=B)[1]))(
        params
    )
    grad_params_inv = jax.grad(lambda p: jnp.sum(rq_spline_inverse(y, _knots(p), tail_bound=B)[0]))(
        params
    )
    return {
        "y": y,
        "ld": ld,
        "x_back": x_back,
        "ld_back": ld_back,
        "dy_dx": dy_dx,
        "dx_dy": dx_dy,
        "grad_params": grad_params,
        "grad_params_inv": grad_params_inv,
        "x_left": knots.x_left,
        "y_left": knots.y_left,
    }


def _spline_inputs(key, scale, n=4000):
    k_p, k_x = jax.random.split(key)
    params = scale * jax.random.normal(k_p, (n, 3 * K - 1))
    x = jnp.concatenate(
        [
            jnp.linspace(-5.0, 5.0, n - 8),
            jnp.array([-B, B, -B - 1e-6, B + 1e-6, 0.0, -1e-7, 1e-7, 100.0]),
        ]
    )
    return params, x


@functools.partial(jax.jit, static_argnames="inverse")
def _spline_from_params(params, value, inverse):
    """`rq_spline` (network outputs straight to one bin), with its parameter gradient."""

    def apply(p):
        w, h, d = split_spline_params(p, K)
        return rq_spline(value, w, h, d, inverse=inverse, tail_bound=B, **SETTINGS)

    out, log_det = apply(params)
    grad = jax.grad(lambda p: jnp.sum(apply(p)[1 - inverse]))(params)
    return out, log_det, grad


@pytest.fixture(scope="module")
def moderate():
    params, x = _spline_inputs(jax.random.key(0), 0.5)
    return params, x, jax.tree.map(np.asarray, _spline_checks(params, x))


@pytest.fixture(scope="module")
def strong():
    params, x = _spline_inputs(jax.random.key(1), 1.5)
    return params, x, jax.tree.map(np.asarray, _spline_checks(params, x))


def test_spline_round_trip_inside_and_outside(moderate):
    _, x, r = moderate
    np.testing.assert_allclose(r["x_back"], x, atol=1e-4)
    np.testing.assert_allclose(r["ld_back"], -r["ld"], atol=1e-4)


def test_spline_inverse_is_as_accurate_as_float32_allows(strong):
    """With strongly curved splines the error is bounded by the conditioning."""
    _, x, r = strong
    err = np.abs(r["x_back"] - np.asarray(x))
    # One float32 ulp of y, mapped back through dx/dy, plus a small absolute floor.
    limit = 1e-5 + 4 * np.spacing(np.abs(r["y"]).astype(np.float32)) * np.exp(-r["ld"])
    assert np.all(err <= limit)


def test_spline_from_network_outputs_equals_the_spline_of_all_knots(moderate, strong):
    """`rq_spline` picks one bin before the softplus; `rq_knots` builds every knot first."""
    for params, x, r in (moderate, strong):
        y, ld, grad = map(np.asarray, _spline_from_params(params, x, False))
        np.testing.assert_allclose(y, r["y"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ld, r["ld"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(grad, r["grad_params"], rtol=1e-5, atol=1e-6)
        x_back, ld_back, grad_inv = map(np.asarray, _spline_from_params(params, r["y"], True))
        np.testing.assert_allclose(x_back, r["x_back"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ld_back, r["ld_back"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(grad_inv, r["grad_params_inv"], rtol=1e-5, atol=1e-6)
        outside = np.abs(np.asarray(x)) > B
        np.testing.assert_array_equal(y[outside], np.asarray(x)[outside])


@functools.partial(jax.jit, static_argnames=("inverse", "unrolled"))
def _spline_evaluation(params, value, inverse, unrolled):
    w, h, d = split_spline_params(params, K)
    return _spline(value, w, h, d, inverse=inverse, unrolled=unrolled, tail_bound=B, **SETTINGS)


def test_unrolled_spline_equals_the_trailing_axis_form(moderate, strong):
    """The bins unrolled into separate arrays give the same spline both ways."""
    for params, x, r in (moderate, strong):
        for inverse, value in ((False, x), (True, r["y"])):
            out, log_det = map(np.asarray, _spline_evaluation(params, value, inverse, True))
            ref_out, ref_log_det = map(
                np.asarray, _spline_evaluation(params, value, inverse, False)
            )
            # The knots differ by float32 rounding of their sums (about ulp(B)), which
            # the spline scales by its slope.
            slope = np.exp(ref_log_det)
            assert np.all(np.abs(out - ref_out) <= 1e-5 + 8 * np.spacing(np.float32(B)) * slope)
            # In narrow bins (down to 2B/1000 wide) that rounding is a larger part of
            # the width, and of the slope.
            moderate_slope = np.abs(ref_log_det) <= 2.0
            np.testing.assert_allclose(
                log_det[moderate_slope], ref_log_det[moderate_slope], rtol=0, atol=1e-3
            )
            assert np.all(np.isfinite(log_det))
            outside = np.abs(np.asarray(value)) > B
            np.testing.assert_array_equal(out[outside], np.asarray(value)[outside])


@jax.jit
def _per_bin_inverse(params, value):
    """`rq_spline_inverse_per_bin` with the values on a leading axis and the bins split off."""
    per_bin = [params[..., k] for k in range(3 * K - 1)]
    return rq_spline_inverse_per_bin(
        value, per_bin[:K], per_bin[K : 2 * K], per_bin[2 * K :], tail_bound=B, **SETTINGS
    )


def test_per_bin_inverse_equals_the_spline_of_all_knots(moderate, strong):
    """Parameters given as one array per bin give the inverse of `rq_knots`' spline."""
    for params, _, r in (moderate, strong):
        x_back, log_det = map(np.asarray, _per_bin_inverse(params, r["y"]))
        # Knots from sums added in another order differ by about ulp(B), which the
        # inverse scales by its slope dx/dy.
        slope = np.exp(r["ld_back"])
        assert np.all(np.abs(x_back - r["x_back"]) <= 1e-5 + 8 * np.spacing(np.float32(B)) * slope)
        moderate_slope = np.abs(r["ld_back"]) <= 2.0
        np.testing.assert_allclose(log_det[moderate_slope], r["ld_back"][moderate_slope], atol=1e-3)
        outside = np.abs(r["y"]) > B
        assert outside.any()
        assert (~outside).any()
        np.testing.assert_array_equal(x_back[outside], r["y"][outside])
    # Negative control: widths and heights swapped give another spline.
    params, _, r = moderate
    shuffled = jnp.concatenate([params[..., K : 2 * K], params[..., :K], params[..., 2 * K :]], -1)
    x_wrong, _ = map(np.asarray, _per_bin_inverse(shuffled, r["y"]))
    inside = np.abs(r["y"]) < B
    assert np.max(np.abs(x_wrong - r["x_back"])[inside]) > 0.1


def test_per_bin_inverse_rejects_mismatched_bin_counts():
    w = [jnp.zeros(3)] * 4
    with pytest.raises(ValueError, match=r"unnormalised_derivatives: expected K - 1 = 3 arrays"):
        rq_spline_inverse_per_bin(jnp.zeros(3), w, w, w, tail_bound=B, **SETTINGS)
    with pytest.raises(ValueError, match=r"unnormalised_heights: expected K = 4 arrays.*got 3"):
        rq_spline_inverse_per_bin(jnp.zeros(3), w, w[:3], w[:3], tail_bound=B, **SETTINGS)


def test_sampling_sized_inverse_is_unrolled_and_differentiated_through_the_reference():
    """Many rows of one value take the unrolled inverse; its gradient is the reference's."""
    n = UNROLLED_MIN_VALUES + 4
    params = 1.5 * jax.random.normal(jax.random.key(7), (n, 1, 3 * K - 1))
    y = 4.0 * jax.random.uniform(jax.random.key(8), (n, 1), minval=-1.0, maxval=1.0)

    def inverse(p, value, unrolled=None):
        w, h, d = split_spline_params(p, K)
        if unrolled is None:
            return rq_spline(value, w, h, d, inverse=True, tail_bound=B, **SETTINGS)
        return _spline(value, w, h, d, inverse=True, unrolled=unrolled, tail_bound=B, **SETTINGS)

    def jaxpr(p, value):
        return str(jax.make_jaxpr(inverse)(p, value))

    assert "name=unrolled_inverse" in jaxpr(params, y)
    # Negative controls: few rows, or two values per row, keep the reference form.
    assert "name=unrolled_inverse" not in jaxpr(params[:10], y[:10])
    assert "name=unrolled_inverse" not in jaxpr(params.reshape(-1, 2, 3 * K - 1), y.reshape(-1, 2))

    def loss(p, unrolled=None):
        out, log_det = inverse(p, y, unrolled)
        return jnp.sum(out) + jnp.sum(log_det)

    fast = jax.jit(lambda p: (inverse(p, y), jax.grad(loss)(p)))
    reference = jax.jit(lambda p: (inverse(p, y, False), jax.grad(lambda q: loss(q, False))(p)))
    (out, log_det), grad = fast(params)
    (ref_out, ref_log_det), ref_grad = reference(params)
    slope = np.exp(np.asarray(ref_log_det))
    assert np.all(np.abs(out - ref_out) <= 1e-5 + 8 * np.spacing(np.float32(B)) * slope)
    # The gradient is the reference's own: the same computation, to the last bit.
    np.testing.assert_array_equal(grad, ref_grad)
    assert np.all(np.isfinite(grad))


def test_spline_log_det_matches_autodiff(moderate, strong):
    for _, _, r in (moderate, strong):
        np.testing.assert_allclose(r["ld"], np.log(r["dy_dx"]), atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(r["ld_back"], np.log(r["dx_dy"]), atol=1e-3, rtol=1e-3)


def test_spline_is_monotone_identity_outside_and_continuous_at_bounds(strong):
    _, x, r = strong
    x = np.asarray(x)
    assert np.all(r["dy_dx"] > 0)
    outside = np.abs(x) > B
    np.testing.assert_array_equal(r["y"][outside], x[outside])
    np.testing.assert_array_equal(r["ld"][outside], 0.0)
    # At +-B the spline meets the identity tails with slope 1.
    at_bound = np.isin(x, [-B, B])
    np.testing.assert_allclose(r["y"][at_bound], x[at_bound], atol=1e-5)
    np.testing.assert_allclose(r["dy_dx"][at_bound], 1.0, atol=1e-3)


@jax.jit
def _one_spline(params, x):
    return rq_spline_forward(x, _knots(params), tail_bound=B)[0]


def test_one_spline_is_monotone_and_continuous():
    params = 1.5 * jax.random.normal(jax.random.key(5), (3 * K - 1,))
    x = jnp.linspace(-4.0, 4.0, 80_001)
    y = np.asarray(_one_spline(params, x))
    steps = np.diff(y)
    assert np.all(steps >= 0)
    assert np.max(steps) < 0.05  # no jumps (a jump would also break the round trip)


def test_spline_parameter_gradients_are_finite(moderate, strong):
    for _, _, r in (moderate, strong):
        assert np.all(np.isfinite(r["grad_params"]))
        assert np.all(np.isfinite(r["grad_params_inv"]))


def test_spline_knots_respect_floors(strong):
    _, _, r = strong
    widths = np.diff(np.concatenate([r["x_left"], np.full(r["x_left"][:, :1].shape, B)], 1))
    heights = np.diff(np.concatenate([r["y_left"], np.full(r["y_left"][:, :1].shape, B)], 1))
    floor = 2 * B * 1e-3 * (1 - 1e-4)
    assert widths.min() >= floor
    assert heights.min() >= floor
    np.testing.assert_allclose(r["x_left"][:, 0], -B)


def test_spline_with_zero_parameters_is_identity():
    x = jnp.linspace(-4.0, 4.0, 41)
    y, ld = rq_spline_forward(x, _knots(jnp.zeros((3 * K - 1,))), tail_bound=B)
    np.testing.assert_allclose(y, x, atol=1e-6)
    np.testing.assert_allclose(ld, 0.0, atol=1e-6)


# --------------------------------------------------------------------------- MADE


@pytest.mark.parametrize(("dim", "num_hidden_layers"), [(1, 2), (2, 1), (4, 2)])
def test_made_is_autoregressive(dim, num_hidden_layers):
    made = MADE(
        dim,
        2,
        3,
        hidden_features=7,
        num_hidden_layers=num_hidden_layers,
        activation="tanh",
        rngs=nnx.Rngs(0),
        final_init_scale=1.0,
    )
    x = jax.random.normal(jax.random.key(1), (dim,))
    context = jnp.array([0.3, -0.2])
    graphdef, state = nnx.split(made)
    jac, jac_c, full, blocks = _made_checks(graphdef, state, x, context)
    dependency = np.any(np.asarray(jac).reshape(dim, 3, dim) != 0, axis=1)  # (out dim, in dim)
    np.testing.assert_array_equal(dependency, np.tril(np.ones((dim, dim), bool), k=-1))
    # The context reaches every output, the first dimension's included.
    assert np.all(np.any(np.asarray(jac_c) != 0, axis=1))
    # output_block(j) is the j-th block of the full output.
    np.testing.assert_allclose(blocks, np.asarray(full).reshape(dim, 3), rtol=1e-6, atol=1e-6)


@functools.partial(jax.jit, static_argnums=0)
def _made_checks(graphdef, state, x, context):
    made = nnx.merge(graphdef, state)
    jac = jax.jacfwd(lambda v: made(v, context))(x)
    jac_c = jax.jacfwd(lambda c: made(x, c))(context)
    h = made.hidden(x, context)
    blocks = jnp.stack([made.output_block(h, j) for j in range(made.dim)])
    return jac, jac_c, made(x, context), blocks


def test_made_masks_shapes_and_degrees():
    masks = made_masks(3, 5, 2, 4)
    assert [m.shape for m in masks] == [(3, 5), (5, 5), (5, 12)]
    # The last input feeds no hidden unit; degree-0 hidden units see no input but
    # feed every output block (so the first block still depends on the context).
    assert not masks[0][2].any()
    assert not masks[0][:, 0].any()
    assert masks[-1][0].all()
    np.testing.assert_array_equal(np.flatnonzero(masks[-1][:, :4].any(1)), [0, 3])


# --------------------------------------------------------------------------- chunking


def test_map_rows_in_chunks_matches_direct_call():
    x = jnp.arange(23.0).reshape(23, 1)
    ids = jnp.arange(23)

    def fn(a, i):
        return {"sum": a[:, 0] + i, "pair": jnp.concatenate([a, a * 2], axis=1)}

    direct = fn(x, ids)
    chunked = map_rows_in_chunks(fn, x, ids, chunk_rows=5)
    for key in direct:
        np.testing.assert_array_equal(chunked[key], direct[key])


def test_sampling_is_independent_of_chunking_and_runs_under_nnx_jit(monkeypatch):
    """Chunked and one-piece sampling draw the same samples (same base noise)."""
    flow = NeuralSplineFlow(2, 2, rngs=nnx.Rngs(0), num_transforms=2, hidden_features=4)
    # Move away from the identity so that a wrong context row would show.
    params = nnx.state(flow, nnx.Param)
    nnx.update(
        flow, jax.tree.map(lambda p: p + 0.3 * jnp.cos(jnp.arange(p.size)).reshape(p.shape), params)
    )
    context = jnp.array([[0.1, 0.2], [-0.3, 0.4], [1.0, -1.0]])
    sample = nnx.jit(lambda f, k, c: f.sample_and_log_prob(k, c, 7))
    whole = sample(flow, jax.random.key(0), context)
    # chunk_rows=4: slices of one observation's 7 draws; 16: two observations per chunk.
    for chunk_rows in (4, 16):
        monkeypatch.setattr(
            flow_module,
            "map_samples_in_chunks",
            functools.partial(map_samples_in_chunks, chunk_rows=chunk_rows),
        )
        sample_chunked = nnx.jit(lambda f, k, c: f.sample_and_log_prob(k, c, 7))
        chunked = sample_chunked(flow, jax.random.key(0), context)
        for a, b in zip(whole, chunked, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)
    assert whole[0].shape == (3, 7, 2)
    # The context matters: a different context gives different samples from the same noise.
    other = sample(flow, jax.random.key(0), context[::-1])
    assert not np.allclose(other[0][0], whole[0][0])


# --------------------------------------------------------------------------- flow building blocks


def _perturbed(module, seed, scale=0.3):
    """Push every parameter of ``module`` away from its initialisation."""
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves), rest)


def test_lu_linear_is_an_invertible_linear_map_with_the_right_log_det():
    layer = _perturbed(LULinear(4), 1)
    x = jax.random.normal(jax.random.key(2), (7, 4))
    y, log_det = layer(x, None, inverse=False)
    matrix = np.asarray(layer.matrix(), np.float64)
    np.testing.assert_allclose(y, x @ matrix.T + np.asarray(layer.bias[...]), rtol=1e-5, atol=1e-5)
    sign, logabs = np.linalg.slogdet(matrix)
    assert sign > 0
    np.testing.assert_allclose(log_det, logabs, rtol=1e-5)
    back, inverse_log_det = layer(y, None, inverse=True)
    np.testing.assert_allclose(back, x, atol=1e-4)
    np.testing.assert_allclose(inverse_log_det, -logabs, rtol=1e-5)


def test_lu_linear_starts_at_the_identity():
    layer = LULinear(3)
    np.testing.assert_allclose(layer.matrix(), np.eye(3), atol=1e-6)
    assert float(layer.log_abs_det()) == pytest.approx(0.0, abs=1e-6)


def test_conditional_affine_round_trip_jacobian_and_broadcasting():
    layer = _perturbed(
        ConditionalAffine(
            3, 2, hidden_features=8, num_hidden_layers=1, activation="tanh", rngs=nnx.Rngs(0)
        ),
        3,
    )
    context = jax.random.normal(jax.random.key(4), (5, 2))
    x = jax.random.normal(jax.random.key(5), (5, 3))
    y, log_det = layer(x, context, inverse=False)
    jacobians = jax.vmap(jax.jacobian(lambda xi, ci: layer(xi, ci, inverse=False)[0]))(x, context)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(np.asarray(jacobians))[1], rtol=1e-5)
    back, inverse_log_det = layer(y, context, inverse=True)
    np.testing.assert_allclose(back, x, atol=1e-5)
    np.testing.assert_allclose(inverse_log_det, -log_det, rtol=1e-6)
    # Many rows per context row: (5, 4, 3) against (5, 1, 2) equals explicit repetition.
    many = jax.random.normal(jax.random.key(6), (5, 4, 3))
    y_many, ld_many = layer(many, context[:, None, :], inverse=False)
    y_rep, ld_rep = layer(many.reshape(20, 3), jnp.repeat(context, 4, axis=0), inverse=False)
    np.testing.assert_allclose(y_many.reshape(20, 3), y_rep, rtol=1e-6)
    np.testing.assert_allclose(np.broadcast_to(ld_many, (5, 4)).reshape(20), ld_rep, rtol=1e-6)


@pytest.mark.parametrize("in_features", [0, 3])
def test_residual_conditioner_broadcasts_and_starts_at_zero(in_features):
    net = ResidualConditioner(
        in_features, 2, 5, hidden_features=8, num_blocks=2, activation="relu", rngs=nnx.Rngs(0)
    )
    context = jax.random.normal(jax.random.key(7), (4, 1, 2))
    x = jax.random.normal(jax.random.key(8), (4, 6, in_features))
    np.testing.assert_array_equal(net(x, context), 0.0)
    net = _perturbed(net, 9)
    out = net(x, context)
    assert out.shape == ((4, 6, 5) if in_features else (4, 1, 5))
    rows = net(x.reshape(24, in_features), jnp.repeat(context[:, 0], 6, axis=0))
    np.testing.assert_allclose(
        np.broadcast_to(out, (4, 6, 5)).reshape(24, 5), rows, rtol=2e-5, atol=1e-6
    )
    # The context gates matter: a different context changes the output.
    assert not np.allclose(net(x, context + 1.0), out)


def test_residual_conditioner_rejects_bad_sizes():
    with pytest.raises(ValueError, match="num_hidden_layers"):
        ResidualConditioner(
            1, 1, 1, hidden_features=4, num_blocks=0, activation="relu", rngs=nnx.Rngs(0)
        )
    with pytest.raises(ValueError, match="activation"):
        ResidualConditioner(
            1, 1, 1, hidden_features=4, num_blocks=1, activation="nope", rngs=nnx.Rngs(0)
        )
