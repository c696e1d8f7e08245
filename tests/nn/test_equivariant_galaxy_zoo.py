"""Real SDSS images (Galaxy Zoo 1 subset): exact rotation invariance, and mirroring swaps
the clockwise and anticlockwise spiral classes of a D_N classifier (untrained weights)."""

import csv
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from astroprob.nn import ConvEmbedding, EquivariantClassifier
from astroprob.nn.groups import as_group
from astroprob.testing import assert_equivariant

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "galaxyzoo1_sdss_subset"
CLASSES = 6  # 0 elliptical, 1 clockwise spiral, 2 anticlockwise spiral, 3 edge-on, 4 ?, 5 merger
CW, ACW = 1, 2
SWAP = np.array([0, ACW, CW, 3, 4, 5])
PER_CLASS = 2
BLOCK = 9  # 423 = 9 * 47: block means tile the stamp exactly, so the grid symmetries survive


@pytest.fixture(scope="module")
def images():
    with open(DATA / "labels_subset.csv") as f:
        rows = sorted((int(r["CLASS"]), r["OBJID"]) for r in csv.DictReader(f))
    chosen = []
    for c in range(CLASSES):
        chosen += [oid for cls, oid in rows if cls == c][:PER_CLASS]
    stamps = []
    for oid in chosen:
        pixels = np.asarray(Image.open(DATA / "images" / f"{oid}.jpeg").convert("RGB"), np.float32)
        size = pixels.shape[0] // BLOCK
        pixels = pixels.reshape(size, BLOCK, size, BLOCK, 3).mean(axis=(1, 3)) / 255.0
        stamps.append(pixels)
    return np.stack(stamps)  # (12, 47, 47, 3)


def _probabilities(module):
    graphdef, state = nnx.split(module)
    apply = jax.jit(lambda s, x: jax.nn.softmax(nnx.merge(graphdef, s)(x), axis=-1))
    return lambda x: apply(state, x)


def _mirror_swaps(group):
    group = as_group(group)
    return lambda p, g: p[:, SWAP] if group.element(g)[1] else p


@pytest.mark.parametrize("group", ["D4"])
def test_real_galaxies_rotation_invariant_and_mirror_swaps_spirals(images, group):
    assert images.shape == (CLASSES * PER_CLASS, 47, 47, 3)
    clf = EquivariantClassifier(
        group,
        CLASSES,
        mirror_pairs=[(CW, ACW)],
        in_channels=3,
        channels=(4, 8, 8),
        hidden=16,
        rngs=nnx.Rngs(0),
    )
    prob = _probabilities(clf)
    g = as_group(group)
    grid = [e for e in range(g.order) if (4 * g.element(e)[0]) % g.n == 0]  # 90-deg multiples
    assert_equivariant(
        prob,
        jax.random.key(0),
        images,
        group=g,
        atol=0.0,
        rtol=1e-5,
        output_action=_mirror_swaps(g),
        elements=grid,
    )
    p = np.asarray(prob(images))
    # The swap is not trivial: the two spiral probabilities differ.
    assert np.min(np.abs(p[:, CW] - p[:, ACW])) > 1e-6


class _PlainClassifier(nnx.Module):
    def __init__(self):
        self.cnn = ConvEmbedding(
            (47, 47), features=CLASSES, channels=(4, 8), hidden=16, in_channels=3, rngs=nnx.Rngs(0)
        )

    def __call__(self, x):
        return self.cnn(x)


def test_plain_cnn_does_not_swap_spirals(images):
    prob = _probabilities(_PlainClassifier())
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(
            prob,
            jax.random.key(0),
            images,
            group="D4",
            rtol=1e-3,
            output_action=_mirror_swaps("D4"),
            elements=[4],
        )
