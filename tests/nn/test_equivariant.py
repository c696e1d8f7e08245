"""Equivariant CNNs: exact C4/D4 symmetry, equivariant heads, the C8/D8 bound, and NPE use."""

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import astroprob as ap
from astroprob.inference._network import context_size
from astroprob.nn import ConvEmbedding, EquivariantClassifier, EquivariantCNN
from astroprob.nn.equivariant import (
    GroupConv,
    GroupLayerNorm,
    LiftingConv,
    input_profile,
    regular_vectors,
    ring_weights,
)
from astroprob.nn.groups import as_group
from astroprob.testing import assert_equivariant

# Documented in docs/embeddings.md and EquivariantCNN: for C8/D8 the invariant and
# equivariant outputs of an untrained default-size network change under 45-degree
# rotations of smooth images by less than this fraction of the largest output.
C8_RELATIVE_BOUND = 0.05


def _jit(module):
    """Jit a module with its weights as arguments (not folded into the program)."""
    graphdef, state = nnx.split(module)
    apply = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    return lambda x: apply(state, x)


def _outputs(group):
    return ("spin2", "spin1") + (("sign",) if as_group(group).reflections else ())


@pytest.fixture(scope="module", params=[("C4", 16), ("D4", 17)], ids=["C4-16px", "D4-17px"])
def exact_net(request):
    group, size = request.param
    net = EquivariantCNN(
        group,
        features=6,
        equivariant_outputs=_outputs(group),
        channels=(4, 6, 6),
        hidden=16,
        input_rings=3 if group == "D4" else 0,  # the input's profile must keep exactness too
        rngs=nnx.Rngs(0),
    )
    x = jax.random.normal(jax.random.key(size), (3, size, size))
    return group, net, _jit(net), x


def test_invariant_and_equivariant_outputs_are_exact(exact_net):
    # Even and odd sizes: pooling keeps the grid symmetric in both cases.
    group, net, fn, x = exact_net
    # Invariant columns to 1e-5 relative (float32); spin and sign columns rotate exactly.
    errors = assert_equivariant(
        fn, jax.random.key(0), x, group=group, atol=0.0, rtol=1e-5, output=net.output_slices
    )
    assert len(errors) == as_group(group).order


def test_equivariant_heads_really_rotate(exact_net):
    # Negative controls: the spin outputs are not invariant, and the wrong spin fails.
    group, net, fn, x = exact_net
    spin2 = net.output_slices[1][1]
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(
            lambda x: fn(x)[:, spin2], jax.random.key(0), x, group=group, output="invariant"
        )
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(
            lambda x: fn(x)[:, spin2], jax.random.key(0), x, group=group, output="spin1"
        )


def test_plain_cnn_fails_the_check():
    net = ConvEmbedding((16, 16), features=4, channels=(4, 4), hidden=8, rngs=nnx.Rngs(0))
    with pytest.raises(AssertionError, match=r"element 1 \(r\^1\)"):
        assert_equivariant(_jit(net), jax.random.key(2), (3, 16, 16), group="C4", rtol=1e-2)


def test_layers_are_equivariant_on_regular_feature_maps():
    group = "D4"
    lift = LiftingConv(group, 2, 3, kernel_size=5, rngs=nnx.Rngs(0))
    conv = GroupConv(group, 3, 2, kernel_size=3, rngs=nnx.Rngs(1))
    norm = GroupLayerNorm(2)
    norm.scale[...] = jnp.array([1.5, 0.5])
    norm.shift[...] = jnp.array([0.1, -0.2])
    x = jax.random.normal(jax.random.key(3), (2, 9, 9, 2))
    stack = jax.jit(lambda x: norm(conv(jax.nn.relu(lift(x)))))
    assert_equivariant(stack, jax.random.key(0), x, group=group, output="regular")


def test_plain_pooling_would_break_exactness_but_ours_does_not():
    # Odd-sized maps: cropping 2x2 pooling is not symmetric; symmetric_pool2 is.
    from astroprob.nn._conv import symmetric_pool2
    from astroprob.nn.cnn import _avg_pool_2x2

    x = jax.random.normal(jax.random.key(4), (1, 9, 9, 1))
    assert_equivariant(jax.jit(symmetric_pool2), jax.random.key(0), x, group="D4", output="image")
    with pytest.raises(AssertionError):
        assert_equivariant(jax.jit(_avg_pool_2x2), jax.random.key(0), x, group="D4", output="image")


@pytest.mark.parametrize("size", [8, 9])
def test_rings_are_concentric_and_mapped_onto_themselves(size):
    weights = ring_weights(size, size, 4)
    np.testing.assert_allclose(weights.sum(axis=(1, 2)), 1.0)
    # Every pixel contributes; the rings' mean radii grow outwards from the centre.
    assert np.all(weights.sum(axis=0) > 0)
    c = (size - 1) / 2
    radius = np.hypot(*(np.mgrid[:size, :size] - c))
    mean_radius = np.sum(weights * radius, axis=(1, 2))
    assert np.all(np.diff(mean_radius) > 0.5)
    for turned in (np.rot90(weights, axes=(1, 2)), np.swapaxes(weights, 1, 2)):
        np.testing.assert_array_equal(turned, weights)


def test_ring_pooling_is_regular_and_sees_the_radial_profile():
    group = as_group("D4")
    f = jax.random.normal(jax.random.key(5), (2, 9, 9, group.order, 3))
    vectors = regular_vectors(group, f, rings=4)
    assert vectors.shape == (2, group.order, (3 + 4) * 3)
    for g in range(group.order):
        moved = regular_vectors(group, group.act_on_regular(f, g), rings=4)
        np.testing.assert_allclose(moved, vectors[:, group.inverse_table()[g]], atol=1e-6)
    # A centred point and a centred ring of the same total: same mean and (zero)
    # first moments, told apart only by the ring profile.
    point = np.zeros((1, 9, 9, 1, 1), np.float32)
    point[0, 4, 4] = 8.0
    ring = np.zeros_like(point)
    ring[0, [1, 7, 4, 4, 2, 2, 6, 6], [4, 4, 1, 7, 2, 6, 2, 6]] = 1.0
    trivial = as_group("C1")
    plain = [regular_vectors(trivial, jnp.asarray(m)) for m in (point, ring)]
    np.testing.assert_allclose(plain[0], plain[1], atol=1e-6)
    profiles = [regular_vectors(trivial, jnp.asarray(m), rings=4)[..., 3:] for m in (point, ring)]
    assert float(jnp.max(jnp.abs(profiles[0] - profiles[1]))) > 0.1


# ----------------------------------------------------------------- C8 / D8 on smooth images
def _blob_parameters(seed, n, size, blobs=4):
    """Random elliptical Gaussian blobs (width 1.5-3 px) well inside the inscribed disk."""
    rng = np.random.default_rng(seed)
    radius = rng.uniform(0, size / 2 - 11, (n, blobs))
    angle = rng.uniform(0, 2 * np.pi, (n, blobs))
    centres = np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1)
    widths = rng.uniform(1.5, 3.0, (n, blobs, 2))
    tilt = rng.uniform(0, np.pi, (n, blobs))
    amplitude = rng.uniform(0.5, 1.5, (n, blobs))
    return centres, widths, tilt, amplitude


def _render(params, size, matrix=None):
    """The blobs moved by the 2x2 ``matrix`` (acting on (x, y)), sampled on the pixel grid."""
    matrix = np.eye(2) if matrix is None else matrix
    centres, widths, tilt, amplitude = params
    c = (size - 1) / 2
    ys, xs = np.mgrid[:size, :size] - c
    points = np.stack([xs, ys], -1)
    rot = np.stack([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]]).transpose(
        2, 3, 0, 1
    )
    axes = matrix @ rot  # (n, blobs, 2, 2)
    cov = axes @ (widths[..., :, None] ** 2 * np.swapaxes(axes, -1, -2))
    prec = np.linalg.inv(cov)
    d = points[None, None] - (centres @ matrix.T)[:, :, None, None, :]
    q = np.einsum("nbhwi,nbij,nbhwj->nbhw", d, prec, d)
    return np.sum(amplitude[..., None, None] * np.exp(-0.5 * q), axis=1).astype(np.float32)


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
@pytest.mark.parametrize("group", ["D8"])
def test_c8_and_d8_meet_the_documented_bound_on_smooth_images(group):
    g = as_group(group)
    size = 33
    net = EquivariantCNN(group, features=16, equivariant_outputs=_outputs(group), rngs=nnx.Rngs(1))
    fn = _jit(net)
    params = _blob_parameters(0, 8, size)
    x = _render(params, size)
    rerender = lambda _, e: _render(params, size, g.matrix(e))  # noqa: E731
    errors = assert_equivariant(
        fn,
        jax.random.key(0),
        x,
        group=g,
        atol=0.0,
        rtol=C8_RELATIVE_BOUND,
        output=net.output_slices,
        input_action=rerender,
    )
    # Rotations by multiples of 90 degrees are grid symmetries: exact there too.
    quarter = [e for e in range(g.order) if (4 * g.element(e)[0]) % g.n == 0]
    assert_equivariant(
        fn,
        jax.random.key(0),
        x,
        group=g,
        atol=0.0,
        rtol=1e-5,
        output=net.output_slices,
        elements=quarter,
    )
    # The bound means something: different images differ by far more than the error.
    y = np.asarray(fn(x))
    between = np.abs(y[:, None] - y[None]).max(-1)[~np.eye(len(y), dtype=bool)]
    assert max(errors.values()) < 0.25 * np.median(between)


def test_helper_needs_an_input_action_off_the_grid():
    with pytest.raises(ValueError, match="does not map a 9x9 pixel grid"):
        assert_equivariant(
            lambda x: x.sum((1, 2)), jax.random.key(0), jnp.ones((1, 9, 9)), group="C8"
        )


# ----------------------------------------------------------------- classifier and NPE
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"group": "C4", "num_classes": 3, "mirror_pairs": [(0, 1)]}, "need a dihedral group"),
        ({"group": "D4", "num_classes": 3, "mirror_pairs": [(0, 3)]}, "mirror_pairs: expected"),
        ({"group": "D4", "num_classes": 3, "mirror_pairs": [(0, 1), (1, 2)]}, "disjoint"),
    ],
)
def test_classifier_bad_pairs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EquivariantClassifier(**kwargs, rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"group": "E4"}, "group: expected"),
        ({"group": "C4", "equivariant_outputs": ("sign",)}, "equivariant_outputs: .*dihedral"),
        ({"group": "C4", "equivariant_outputs": ("trivial",)}, "equivariant_outputs: expected"),
        ({"group": "C4", "channels": ()}, "channels: expected positive integers"),
        ({"group": "C4", "features": 0}, "features: expected a positive integer"),
        ({"group": "C4", "activation": "swish"}, "activation: expected one of"),
        ({"group": "C8", "basis": "pixel"}, "'pixel' needs a group"),
        ({"group": "C4", "kernel_size": 4}, "kernel_size: expected an odd"),
        ({"group": "C4", "rings": -1}, "rings: expected a non-negative int"),
        ({"group": "C4", "input_rings": -2}, "input_rings: expected a non-negative int"),
    ],
)
def test_bad_configuration_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EquivariantCNN(**kwargs, rngs=nnx.Rngs(0))


def test_input_profile_is_the_mean_and_ring_means_of_each_channel():
    x = jax.random.normal(jax.random.key(3), (2, 9, 9, 2))
    rings = 3
    profile = np.asarray(input_profile(x, rings)).reshape(2, 2, 1 + rings)
    weights = ring_weights(9, 9, rings)
    by_hand = np.einsum("bhwc,rhw->bcr", np.asarray(x, float), weights)
    np.testing.assert_allclose(profile[..., 0], np.asarray(x).mean(axis=(1, 2)), atol=1e-6)
    np.testing.assert_allclose(profile[..., 1:], by_hand, atol=1e-6)
    # Linear in the image (it keeps the brightness), unchanged by the square's symmetries.
    np.testing.assert_allclose(input_profile(3 * x, rings), 3 * input_profile(x, rings), rtol=1e-5)
    for turned in (jnp.rot90(x, 1, axes=(1, 2)), x[:, ::-1], jnp.swapaxes(x, 1, 2)):
        np.testing.assert_allclose(input_profile(turned, rings), input_profile(x, rings), atol=1e-6)


def test_input_rings_widen_only_the_invariant_head():
    kwargs = {"features": 4, "equivariant_outputs": ("spin2",), "channels": (2, 3)}
    plain = EquivariantCNN("C4", in_channels=2, rngs=nnx.Rngs(0), **kwargs)
    profiled = EquivariantCNN("C4", in_channels=2, input_rings=5, rngs=nnx.Rngs(0), **kwargs)
    assert profiled.invariant_hidden.in_features == plain.invariant_hidden.in_features + 2 * 6
    assert profiled.equivariant_hidden.in_features == plain.equivariant_hidden.in_features
    out = jax.eval_shape(profiled, jax.ShapeDtypeStruct((3, 12, 12, 2), jnp.float32))
    assert out.shape == (3, 6)


def test_wrong_input_shape_raises():
    net = EquivariantCNN("C4", channels=(2,), in_channels=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"x: expected \(batch, height, width, 3\)"):
        net(jnp.zeros((2, 8, 8)))


def test_output_size_is_what_npe_reads():
    net = EquivariantCNN(
        "D4", features=4, equivariant_outputs=("spin2", "spin1"), channels=(2,), rngs=nnx.Rngs(0)
    )
    assert context_size(net, (32, 32)) == 8
    assert dict(net.output_slices) == {
        "invariant": slice(0, 4),
        "spin2": slice(4, 6),
        "spin1": slice(6, 8),
    }


@pytest.mark.slow  # compiles a full NPE training epoch (about 20 s on a quiet 2-core CPU)
def test_works_as_npe_embedding_and_reloads(tmp_path):
    task = ap.tasks.SersicGalaxy(stamp_size=32, pixel_scale=0.15 * u.arcsec, noise="gaussian")
    # Prior draws and noise images: the shapes NPE checks, without compiling the renderer.
    theta = task.prior.sample(jax.random.key(6), (40,))
    x = jax.random.normal(jax.random.key(9), (40, 32, 32))

    def make():
        return EquivariantCNN(
            "D4",
            features=4,
            equivariant_outputs=("spin2", "spin1"),
            channels=(2, 4),
            hidden=8,
            rngs=nnx.Rngs(0),
        )

    npe = ap.NPE(task, density="mdn", embedding=make(), num_components=2)
    npe.fit(jax.random.key(7), theta, x, max_epochs=1, batch_size=16, progress_bar=False)
    samples = npe.posterior(x[:2]).sample(jax.random.key(8), 5)
    assert samples.shape == (2, 5, 7)
    npe.save(tmp_path / "run")
    loaded = ap.NPE.load(tmp_path / "run", task=task, embedding=make())
    np.testing.assert_allclose(
        loaded.posterior(x[0]).log_prob(theta[:3]),
        npe.posterior(x[0]).log_prob(theta[:3]),
        rtol=1e-5,
    )
