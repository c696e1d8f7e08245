"""Groups C_N and D_N: group laws, representations, and exact pixel actions."""

import numpy as np
import pytest

from astroprob.nn.equivariant import filter_basis
from astroprob.nn.groups import CyclicGroup, DihedralGroup, as_group

GROUPS = [CyclicGroup(4), DihedralGroup(4), CyclicGroup(8), DihedralGroup(8), DihedralGroup(1)]
REPS = ["trivial", "regular", "spin1", "spin2", "spin3"]


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_representations_are_homomorphisms(group):
    mats = np.stack([group.matrix(g) for g in range(group.order)])
    np.testing.assert_allclose(group.representation("spin1"), mats, atol=1e-12)
    for name in REPS + (["sign"] if group.reflections else []):
        rho = group.representation(name)
        for a in range(group.order):
            assert group.compose(a, group.inverse(a)) == 0
            for b in range(group.order):
                np.testing.assert_allclose(rho[group.compose(a, b)], rho[a] @ rho[b], atol=1e-12)


def test_pixel_action_follows_the_image_convention():
    # Sersic/FITS convention: +90 deg counter-clockwise is numpy.rot90(image, k=-1); the
    # mirror x -> -x reverses the columns.
    group = DihedralGroup(4)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(group.act_on_images(x, 1), np.rot90(x, k=-1, axes=(1, 2)))
    np.testing.assert_array_equal(group.act_on_images(x, 4), x[:, :, ::-1])
    # A group action: (ab) x == a (b x).
    for a in range(8):
        for b in range(8):
            np.testing.assert_array_equal(
                group.act_on_images(x, group.compose(a, b)),
                group.act_on_images(np.asarray(group.act_on_images(x, b)), a),
            )


def test_regular_action_is_a_group_action():
    group = DihedralGroup(4)
    f = np.random.default_rng(1).normal(size=(1, 5, 5, 8, 2)).astype(np.float32)
    for a in range(8):
        for b in range(8):
            np.testing.assert_array_equal(
                group.act_on_regular(f, group.compose(a, b)),
                group.act_on_regular(np.asarray(group.act_on_regular(f, b)), a),
            )


def test_steerable_basis_rotates_exactly_by_90_degrees():
    group = DihedralGroup(8)
    basis = filter_basis(group, 5, "steerable")  # (16, nb, 5, 5)
    quarter = group.index(2, 0)  # r^2 of D8: 90 deg
    np.testing.assert_allclose(basis[quarter], np.rot90(basis[0], k=-1, axes=(1, 2)), atol=1e-12)
    np.testing.assert_allclose(basis[group.index(0, 1)], basis[0][:, :, ::-1], atol=1e-12)
    # At 45 deg the sampled basis is not a pixel permutation, but keeps its norm roughly.
    norms = np.linalg.norm(basis[1].reshape(len(basis[1]), -1), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=0.25)


def test_pixel_basis_is_a_permutation():
    basis = filter_basis(DihedralGroup(4), 3, "pixel").reshape(8, 9, 9)
    for g in range(8):
        np.testing.assert_array_equal(basis[g] @ basis[g].T, np.eye(9))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: as_group("E4"), "group: expected a Group or a name"),
        (lambda: as_group("C0"), "group: expected"),
        (lambda: CyclicGroup(4).representation("sign"), "needs a dihedral group"),
        (lambda: CyclicGroup(4).representation("spinny"), "name: expected"),
        (lambda: CyclicGroup(8).pixel_map(1, (5, 5)), "does not map a 5x5 pixel grid"),
        (lambda: CyclicGroup(4).pixel_map(1, (5, 6)), "does not map a 5x6 pixel grid"),
        (lambda: filter_basis(CyclicGroup(8), 3, "pixel"), "'pixel' needs a group"),
        (lambda: filter_basis(CyclicGroup(4), 4, "pixel"), "kernel_size: expected an odd"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
