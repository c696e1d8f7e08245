"""assert_equivariant: passes exact symmetries, fails broken ones, and says which element."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from astroprob.nn.groups import DihedralGroup
from astroprob.testing import assert_equivariant

D4 = DihedralGroup(4)


def _radial_profile(x):
    """Invariant: pixel sums in rings around the centre."""
    size = x.shape[1]
    c = (size - 1) / 2
    ys, xs = np.mgrid[:size, :size]
    ring = np.rint(np.hypot(ys - c, xs - c)).astype(int)
    onehot = jnp.asarray(ring[..., None] == np.arange(ring.max() + 1), x.dtype)
    return jnp.einsum("bhw,hwr->br", x, onehot)


def _centroid(x):
    """Spin 1: the intensity-weighted (x, y) centroid."""
    size = x.shape[1]
    c = (size - 1) / 2
    ys, xs = np.mgrid[:size, :size] - c
    total = jnp.sum(x, axis=(1, 2))
    return jnp.stack([jnp.sum(x * xs, (1, 2)) / total, jnp.sum(x * ys, (1, 2)) / total], -1)


def test_invariant_function_passes_every_element():
    errors = assert_equivariant(_radial_profile, jax.random.key(0), (3, 9, 9), group="D4")
    assert sorted(errors) == list(range(8))
    assert max(errors.values()) < 1e-5


def test_spin1_centroid_passes_and_the_wrong_representation_fails():
    x = jax.random.uniform(jax.random.key(1), (3, 8, 8), minval=0.5)
    assert_equivariant(_centroid, jax.random.key(0), x, group=D4, output="spin1")
    with pytest.raises(AssertionError, match="not equivariant under D4"):
        assert_equivariant(_centroid, jax.random.key(0), x, group=D4, output="spin2")
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(_centroid, jax.random.key(0), x, group=D4, output="invariant")


def test_negative_control_names_the_failing_elements():
    # A corner pixel is invariant only under the identity and the mirror along that diagonal.
    def corner(x):
        return x[:, :1, 0]

    with pytest.raises(AssertionError) as info:
        assert_equivariant(corner, jax.random.key(2), (2, 6, 6), group="D4")
    message = str(info.value)
    assert "element 1 (r^1)" in message
    assert "element 0 " not in message


def test_tolerances_decide():
    def nearly(x):
        # Invariant plus a small, orientation-dependent term.
        return _radial_profile(x) + 1e-3 * x[:, :1, 0]

    x = jax.random.normal(jax.random.key(3), (2, 7, 7))
    assert_equivariant(nearly, jax.random.key(0), x, group="C4", atol=0.0, rtol=1e-2)
    with pytest.raises(AssertionError, match="bound"):
        assert_equivariant(nearly, jax.random.key(0), x, group="C4", atol=0.0, rtol=1e-6)


def test_regular_image_and_custom_actions():
    x = jax.random.normal(jax.random.key(4), (2, 5, 5, 1))
    assert_equivariant(lambda x: 2.0 * x, jax.random.key(0), x, group="D4", output="image")

    # A regular feature map: F(p, g) = x(p + g e) with e = (1, 0), the neighbour of p in
    # direction g; then F[h x](p, g) = F[x](h^-1 p, h^-1 g).
    def neighbours(x):
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        maps = []
        for g in range(8):
            dx, dy = np.rint(D4.matrix(g) @ [1.0, 0.0]).astype(int)
            maps.append(padded[:, 1 + dy : 6 + dy, 1 + dx : 6 + dx])
        return jnp.stack(maps, axis=3)

    assert_equivariant(neighbours, jax.random.key(0), x, group="D4", output="regular")
    with pytest.raises(AssertionError, match="not equivariant"):  # the group axis matters
        assert_equivariant(
            lambda x: neighbours(x)[:, :, :, ::-1],
            jax.random.key(0),
            x,
            group="D4",
            output="regular",
        )
    # Only some elements, and a user-supplied output action (here the identity).
    errors = assert_equivariant(
        _radial_profile,
        jax.random.key(0),
        x[..., 0],
        group="D4",
        elements=[0, 4],
        output_action=lambda y, g: y,
    )
    assert sorted(errors) == [0, 4]


def test_shape_input_is_drawn_from_the_key():
    seen = []

    def record(x):
        seen.append(np.asarray(x))
        return _radial_profile(x)

    assert_equivariant(record, jax.random.key(5), (1, 5, 5), group="C4")
    np.testing.assert_array_equal(seen[0], jax.random.normal(jax.random.key(5), (1, 5, 5)))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="output: expected"):
        assert_equivariant(_radial_profile, jax.random.key(0), (1, 5, 5), group="C4", output="?")
    with pytest.raises(ValueError, match="does not map a 5x5 pixel grid"):
        assert_equivariant(_radial_profile, jax.random.key(0), (1, 5, 5), group="C8")
    with pytest.raises(ValueError, match="group: expected"):
        assert_equivariant(_radial_profile, jax.random.key(0), (1, 5, 5), group="SO2")
