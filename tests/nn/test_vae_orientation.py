"""ConvVAE with orientation: rotation-invariant latent, orientation angle, rotated decoder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import astroprob as ap
from astroprob.nn import vae as V
from astroprob.nn._vae_layers import rotate_images
from astroprob.nn.groups import CyclicGroup

C4 = CyclicGroup(4)


def c4_encoder(seed=0):
    return ap.nn.EquivariantCNN(
        "C4",
        features=8,
        equivariant_outputs=("spin2",),
        channels=(4, 4),
        hidden=16,
        rngs=nnx.Rngs(seed),
    )


@pytest.fixture(scope="module")
def oriented():
    vae = V.ConvVAE(
        (16, 16),
        latent_dim=3,
        channels=(4,),
        hidden=16,
        encoder=c4_encoder(),
        orientation=True,
        rngs=nnx.Rngs(1),
    )
    # An off-centre blob plus noise: no symmetry, a well-defined orientation.
    ys, xs = np.mgrid[:16, :16]
    blob = np.exp(-(((xs - 9.0) / 3.0) ** 2 + ((ys - 6.5) / 1.5) ** 2) / 2)
    x = blob[None] + 0.2 * np.asarray(jax.random.normal(jax.random.key(2), (4, 16, 16)))
    return vae, x.astype(np.float32)


def rot90(x):
    return np.asarray(C4.act_on_images(jnp.asarray(x), 1))


def test_rotation_by_a_quarter_turn_is_the_c4_pixel_permutation():
    images = jax.random.normal(jax.random.key(0), (2, 9, 9, 2))
    quarter = rotate_images(images, jnp.full((2,), jnp.pi / 2))
    np.testing.assert_allclose(quarter, C4.act_on_images(images, 1), atol=1e-5)
    np.testing.assert_allclose(rotate_images(images, jnp.zeros(2)), images, atol=1e-6)
    # A half turn of a smooth image and back returns it (away from the corners).
    ys, xs = np.mgrid[:15, :15]
    smooth = np.exp(-((xs - 7.5) ** 2 + (ys - 6.5) ** 2) / 18.0)[None, :, :, None]
    there = rotate_images(jnp.asarray(smooth, jnp.float32), jnp.array([0.7]))
    back = rotate_images(there, jnp.array([-0.7]))
    inner = np.hypot(xs - 7.0, ys - 7.0) < 5.0  # rotations bring zeros into the corners
    np.testing.assert_allclose(np.asarray(back)[0, inner, 0], smooth[0, inner, 0], atol=0.04)


def test_latent_is_invariant_and_angle_turns_with_the_image(oriented):
    vae, x = oriented
    mean, log_std, angle = vae.encode_with_orientation(jnp.asarray(x))
    mean_r, log_std_r, angle_r = vae.encode_with_orientation(jnp.asarray(rot90(x)))
    scale = float(jnp.abs(mean).max())
    np.testing.assert_allclose(mean_r, mean, atol=1e-5 * scale)
    np.testing.assert_allclose(log_std_r, log_std, atol=1e-5 * float(jnp.abs(log_std).max()))
    # The angle is defined modulo pi: it moves by a quarter turn.
    turn = np.angle(np.exp(2j * (np.asarray(angle_r) - np.asarray(angle)))) / 2
    np.testing.assert_allclose(turn, np.pi / 2 * np.sign(turn), atol=1e-4)
    np.testing.assert_allclose(np.abs(turn), np.pi / 2, atol=1e-4)


def test_reconstruction_and_elbo_are_equivariant(oriented):
    vae, x = oriented
    recon = np.asarray(V.reconstruct(vae, x))
    recon_r = np.asarray(V.reconstruct(vae, rot90(x)))
    np.testing.assert_allclose(recon_r, rot90(recon), atol=1e-4 * np.abs(recon).max())
    key = jax.random.key(3)
    np.testing.assert_allclose(
        V.elbo(key, vae, rot90(x), 0.05, num_samples=4),
        V.elbo(key, vae, x, 0.05, num_samples=4),
        rtol=1e-4,
    )


def test_negative_control_a_plain_vae_is_not_equivariant():
    vae = V.ConvVAE((16, 16), latent_dim=3, channels=(4,), hidden=16, rngs=nnx.Rngs(1))
    x = np.asarray(jax.random.normal(jax.random.key(4), (3, 16, 16)), np.float32)
    recon, recon_r = np.asarray(V.reconstruct(vae, x)), np.asarray(V.reconstruct(vae, rot90(x)))
    assert np.abs(recon_r - rot90(recon)).max() > 1e-2 * np.abs(recon).max()


def test_embedding_gives_the_invariant_latent_and_a_spin2_orientation(oriented):
    vae, x = oriented
    embedding = V.VAEEmbedding(vae)
    features, features_r = embedding(jnp.asarray(x)), embedding(jnp.asarray(rot90(x)))
    assert features.shape == (4, 3 + 2)
    np.testing.assert_allclose(features_r[:, :3], features[:, :3], atol=1e-5)
    # (cos 2φ, sin 2φ) changes sign under a quarter turn.
    np.testing.assert_allclose(features_r[:, 3:], -features[:, 3:], atol=1e-4)
    np.testing.assert_allclose(jnp.sum(features[:, 3:] ** 2, axis=1), 1.0, rtol=1e-5)


def test_generate_and_save_load(tmp_path, oriented):
    vae, x = oriented
    images = np.asarray(V.generate(jax.random.key(5), vae, 6))
    assert images.shape == (6, 16, 16)
    assert np.all(np.isfinite(images))
    V.save_vae(vae, tmp_path / "run")
    saved = V.load_vae(tmp_path / "run", encoder=c4_encoder(seed=7))
    assert saved.model.has_orientation
    assert saved.model.config["orientation"] is True
    np.testing.assert_array_equal(V.reconstruct(saved.model, x), V.reconstruct(vae, x))


def test_bad_orientation_settings_raise():
    with pytest.raises(ValueError, match="orientation: expected an encoder whose output_slices"):
        V.ConvVAE(
            (16, 16), latent_dim=3, channels=(4,), hidden=16, orientation=True, rngs=nnx.Rngs(0)
        )
    spin1 = ap.nn.EquivariantCNN(
        "C4", features=4, equivariant_outputs=("spin1",), channels=(4,), hidden=8, rngs=nnx.Rngs(0)
    )
    with pytest.raises(ValueError, match="'spin2'"):
        V.ConvVAE(
            (16, 16),
            latent_dim=3,
            channels=(4,),
            hidden=16,
            encoder=spin1,
            orientation=True,
            rngs=nnx.Rngs(0),
        )
    plain = V.ConvVAE((16, 16), latent_dim=3, channels=(4,), hidden=16, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="angle: this VAE was built without orientation"):
        plain.decode(jnp.zeros((2, 3)), jnp.zeros(2))


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
def test_gradients_stay_finite_for_an_image_without_orientation(oriented):
    vae, _ = oriented
    # An empty stamp has an exactly zero spin-2 output, where atan2's gradient is 0/0.
    empty = np.zeros((1, 16, 16), np.float32)
    _, _, angle = vae.encode_with_orientation(jnp.asarray(empty))
    assert np.all(np.isfinite(angle))

    def loss(model):
        mean, _, a = model.encode_with_orientation(jnp.asarray(empty))
        return jnp.sum(model.decode(mean, a) ** 2)

    grads = nnx.grad(loss)(vae)
    leaves = jax.tree_util.tree_leaves(nnx.to_pure_dict(grads))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
