"""ConvVAE: analytic terms, the PSF-aware decoder, the bounds, persistence, embedding, training."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.signal
import scipy.stats
from flax import nnx

import astroprob as ap
from astroprob.inference._network import context_size
from astroprob.nn import vae as V
from astroprob.nn._vae_layers import psf_convolve
from astroprob.nn._vae_objective import (
    free_bits_penalty,
    gaussian_log_likelihood,
    kl_to_standard_normal,
)

SMALL = {"latent_dim": 4, "channels": (4, 8), "hidden": 16}


def small_vae(seed=0, **kw):
    return V.ConvVAE((32, 32), **{**SMALL, **kw}, rngs=nnx.Rngs(seed))


# --------------------------------------------------------------------- analytic terms
def test_kl_matches_the_closed_form_of_numpyro():
    mean = jax.random.normal(jax.random.key(0), (5, 3))
    log_std = 0.5 * jax.random.normal(jax.random.key(1), (5, 3))
    expected = dist.kl_divergence(dist.Normal(mean, jnp.exp(log_std)), dist.Normal(0.0, 1.0))
    np.testing.assert_allclose(kl_to_standard_normal(mean, log_std), expected, rtol=1e-5, atol=1e-6)
    # Zero exactly at the prior, positive elsewhere.
    assert float(jnp.abs(kl_to_standard_normal(jnp.zeros((1, 3)), jnp.zeros((1, 3)))).max()) == 0


def test_gaussian_log_likelihood_matches_scipy():
    rng = np.random.default_rng(0)
    x, mean = rng.normal(size=(2, 4, 5, 3)), rng.normal(size=(2, 4, 5, 3))
    variance = rng.uniform(0.1, 3.0, size=(2, 4, 5, 3))
    expected = scipy.stats.norm.logpdf(x, mean, np.sqrt(variance)).reshape(2, -1).sum(axis=1)
    got = gaussian_log_likelihood(jnp.asarray(x), jnp.asarray(mean), jnp.asarray(variance))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_free_bits_penalty_has_the_documented_batch_mean_and_gradient():
    kl = jnp.array([[0.1, 2.0, 0.3], [0.2, 1.0, 0.1]])
    lam = 0.5
    expected = np.sum(np.maximum(np.asarray(kl).mean(axis=0), lam))
    np.testing.assert_allclose(free_bits_penalty(kl, lam).mean(), expected, rtol=1e-6)
    grad = jax.grad(lambda k: free_bits_penalty(k, lam).mean())(kl)
    np.testing.assert_allclose(grad, [[0.0, 0.5, 0.0], [0.0, 0.5, 0.0]])  # only dim 1 active
    np.testing.assert_allclose(free_bits_penalty(kl, 0.0), kl.sum(axis=1))


# ----------------------------------------------------------------- PSF-aware decoder
@pytest.mark.parametrize("psf_shape", [(5, 5), (4, 6)], ids=["odd", "even"])
def test_psf_convolution_equals_scipy_fftconvolve_same(psf_shape):
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 16, 12, 2)).astype(np.float32)
    psf = rng.uniform(size=(*psf_shape, 2)).astype(np.float32)
    got = np.asarray(psf_convolve(jnp.asarray(images), jnp.asarray(psf)))
    for b in range(2):
        for c in range(2):
            expected = scipy.signal.fftconvolve(images[b, ..., c], psf[..., c], mode="same")
            np.testing.assert_allclose(got[b, ..., c], expected, rtol=1e-4, atol=1e-4)


def test_psf_aware_decoder_is_the_decoder_output_convolved_with_the_psf():
    yy, xx = np.mgrid[-3:4, -3:4]
    psf = np.stack([np.exp(-(xx**2 + yy**2) / (2 * s**2)) for s in (0.8, 1.6)], axis=-1)
    psf /= psf.sum(axis=(0, 1))
    vae = small_vae(in_channels=2, psf=psf)
    z = jax.random.normal(jax.random.key(2), (3, 4))
    both = nnx.jit(lambda m, z: (m.decode_intrinsic(z), m.decode(z)))(vae, z)
    intrinsic, decoded = (np.asarray(a) for a in both)
    assert decoded.shape == (3, 32, 32, 2)
    for b in range(3):
        for c in range(2):
            expected = scipy.signal.fftconvolve(intrinsic[b, ..., c], psf[..., c], mode="same")
            np.testing.assert_allclose(decoded[b, ..., c], expected, rtol=1e-4, atol=1e-4)
    # Negative control: the decoder without a PSF returns the intrinsic image, which differs.
    np.testing.assert_allclose(intrinsic[0], intrinsic[0])
    assert np.abs(decoded - intrinsic).max() > 1e-2 * np.abs(intrinsic).max()


# ---------------------------------------------------------------------------- bounds
@pytest.fixture(scope="module")
def untrained():
    vae = small_vae(seed=3)
    x = 0.3 * jax.random.normal(jax.random.key(4), (6, 32, 32))
    return vae, x, 0.05


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
def test_importance_weighted_bound_grows_with_k_and_exceeds_the_elbo(untrained):
    vae, x, var = untrained
    elbo = float(V.elbo(jax.random.key(5), vae, x, var, num_samples=200).mean())
    bounds = [
        float(
            V.importance_weighted_bound(
                jax.random.key(6), vae, x, var, num_samples=k, chunk_size=10
            ).mean()
        )
        for k in (10, 100, 1000)
    ]
    assert all(b2 > b1 for b1, b2 in zip(bounds, bounds[1:], strict=False))
    assert bounds[-1] > elbo


def test_importance_weighted_bound_does_not_depend_on_the_chunking(untrained):
    vae, x, var = untrained
    a = V.importance_weighted_bound(jax.random.key(8), vae, x, var, num_samples=60, chunk_size=10)
    b = V.importance_weighted_bound(
        jax.random.key(8), vae, x, var, num_samples=60, chunk_size=20, batch_size=6
    )
    np.testing.assert_allclose(a, b, rtol=1e-5)
    with pytest.raises(ValueError, match="num_samples: expected a multiple of chunk_size=40"):
        V.importance_weighted_bound(jax.random.key(8), vae, x, var, num_samples=60, chunk_size=40)


def test_a_second_call_does_not_recompile(untrained):
    vae, x, var = untrained
    V.elbo(jax.random.key(0), vae, x, var)
    V.importance_weighted_bound(jax.random.key(0), vae, x, var, num_samples=20, chunk_size=10)
    size = V._map_impl._cache_size()
    V.elbo(jax.random.key(1), vae, x + 1.0, var)
    # K is a traced loop bound: another K with the same chunk reuses the compiled code.
    V.importance_weighted_bound(jax.random.key(1), vae, x, var, num_samples=40, chunk_size=10)
    assert V._map_impl._cache_size() == size


def test_bits_per_dim():
    np.testing.assert_allclose(V.bits_per_dim(-2 * math.log(2.0) * 10, 10), 2.0, rtol=1e-6)


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_shape": (30, 32)}, r"image_shape: expected .* multiple of 4"),
        ({"latent_dim": 0}, "latent_dim: expected a positive integer"),
        ({"channels": ()}, "channels: expected positive integers"),
        ({"psf": np.ones((3, 3, 2))}, r"psf: expected shape \(ph, pw\) or \(ph, pw, 1\)"),
        ({"encoder": "cnn"}, "encoder: expected a flax.nnx.Module or None; got str"),
    ],
)
def test_bad_configuration_raises(kwargs, message):
    args = {"image_shape": (32, 32), **SMALL, **kwargs}
    shape = args.pop("image_shape")
    with pytest.raises((ValueError, TypeError), match=message):
        V.ConvVAE(shape, **args, rngs=nnx.Rngs(0))


def test_bad_data_raises(untrained):
    vae, x, _ = untrained
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, 32, 32\)"):
        V.elbo(jax.random.key(0), vae, x[:, :16], 1.0)
    with pytest.raises(ValueError, match="noise_variance: expected finite values > 0"):
        V.elbo(jax.random.key(0), vae, x, 0.0)
    with pytest.raises(ValueError, match="noise_variance: expected an array broadcastable"):
        V.elbo(jax.random.key(0), vae, x, np.ones(3))
    with pytest.raises(ValueError, match="x: expected finite values; 6 are NaN"):
        V.encode(vae, np.where(np.arange(32 * 32).reshape(32, 32) == 3, np.nan, np.asarray(x)))
    with pytest.raises(ValueError, match="beta: expected a positive number"):
        V.fit_vae(jax.random.key(0), vae, x, 1.0, beta=0.0)


# --------------------------------------------------------------------- persistence
def test_save_load_round_trip_is_bit_exact(tmp_path, untrained):
    _, x, _ = untrained
    psf = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
    vae = small_vae(seed=9, psf=psf)
    vae.data_scale[...] = jnp.asarray(0.7)
    reference = V.AtypicalityReference(np.array([1.0, 2.0, 3.0]), 0.9, 4)
    V.save_vae(vae, tmp_path / "run", atypicality=reference, metadata={"note": "test"})
    saved = V.load_vae(tmp_path / "run")
    before = nnx.to_pure_dict(nnx.state(vae, nnx.Not(nnx.RngState)))
    after = nnx.to_pure_dict(nnx.state(saved.model, nnx.Not(nnx.RngState)))
    for (path, a), (_, b) in zip(
        jax.tree_util.tree_leaves_with_path(before),
        jax.tree_util.tree_leaves_with_path(after),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))
    np.testing.assert_array_equal(V.reconstruct(vae, x), V.reconstruct(saved.model, x))
    np.testing.assert_array_equal(saved.atypicality.statistics, reference.statistics)
    assert (saved.atypicality.threshold, saved.atypicality.num_samples) == (0.9, 4)
    assert saved.metadata == {"note": "test"}
    assert saved.model.psf_shape == (3, 3, 1)
    # The weights file is not pickle, and a tampered one is detected.
    blob = (tmp_path / "run" / V.WEIGHTS_FILE).read_bytes()
    assert not blob.startswith(b"\x80")
    (tmp_path / "run" / V.WEIGHTS_FILE).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ValueError, match="checksum does not match"):
        V.load_vae(tmp_path / "run")


def test_custom_encoder_must_be_given_on_load(tmp_path):
    encoder = ap.nn.ConvEmbedding((32, 32), features=6, channels=(4,), hidden=8, rngs=nnx.Rngs(1))
    vae = small_vae(encoder=encoder)
    V.save_vae(vae, tmp_path)
    assert json.loads((tmp_path / V.CONFIG_FILE).read_text())["model"]["encoder"].endswith(
        "ConvEmbedding"
    )
    with pytest.raises(ValueError, match="encoder: this VAE was built with a custom encoder"):
        V.load_vae(tmp_path)
    loaded = V.load_vae(tmp_path, encoder=encoder).model
    z = jnp.ones((1, 4))
    np.testing.assert_array_equal(loaded.decode(z), vae.decode(z))


# ----------------------------------------------------------------------- embedding
def test_frozen_embedding_equals_the_encoder_mean_and_holds_no_parameters(untrained):
    vae, x, _ = untrained
    frozen = V.VAEEmbedding(vae)
    tuned = V.VAEEmbedding(vae, trainable=True, include_log_std=True)
    mean, log_std = vae.encode(x)
    np.testing.assert_allclose(frozen(x), mean, rtol=1e-6)
    np.testing.assert_allclose(tuned(x), jnp.concatenate([mean, log_std], axis=1), rtol=1e-6)
    assert len(jax.tree.leaves(nnx.state(frozen, nnx.Param))) == 0
    assert len(jax.tree.leaves(nnx.state(tuned, nnx.Param))) > 0
    assert context_size(frozen, (32, 32)) == 4
    assert context_size(tuned, (32, 32)) == 8


# ------------------------------------------------------------ traversal and figures
def test_latent_traversal_moves_one_coordinate(untrained):
    vae, _, _ = untrained
    base = jnp.array([0.1, -0.2, 0.3, 0.0])
    grid = V.latent_traversal(vae, values=(-1.0, 0.5), dims=(2,), z=base)
    assert grid.shape == (1, 2, 32, 32)
    np.testing.assert_allclose(
        grid[0, 1], vae.decode(base.at[2].set(0.5)[None])[0], rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match=r"dims: expected indices in \[0, 4\)"):
        V.latent_traversal(vae, dims=(4,))


def test_figures_have_one_panel_per_image():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 32, 32))
    fig = V.plot_reconstructions(x, 0.5 * x, num_images=4)
    assert len(fig.axes) == 12
    fig2 = V.plot_latent_traversal(rng.normal(size=(4, 3, 32, 32, 2)), [-1, 0, 1])
    assert len(fig2.axes) == 12
    fig3 = V.plot_latent_projection(rng.normal(size=(6, 4)), np.arange(6.0), label="index")
    assert len(fig3.axes) == 2  # scatter and colour bar
    for f in (fig, fig2, fig3):
        plt.close(f)
    with pytest.raises(ValueError, match="reconstructions: expected the shape of images"):
        V.plot_reconstructions(x, x[:3])


class _Interrupted(Exception):
    pass


@pytest.mark.slow  # three short trainings, about a minute
def test_fit_vae_resumes_from_its_checkpoint_file(tmp_path, monkeypatch):
    x = 0.3 * jax.random.normal(jax.random.key(20), (40, 32, 32))
    opts = {"max_epochs": 4, "batch_size": 10, "learning_rate": 1e-3, "progress_bar": False}
    key = jax.random.key(21)
    full = small_vae(seed=5)
    full_history = V.fit_vae(key, full, x, 0.05, **opts)

    path = tmp_path / "vae.ckpt"
    save = V._checkpoint.save_loop_state
    epochs = []

    def killed_after_epoch_two(*args):
        save(*args)
        epochs.append(1)
        if len(epochs) == 2:
            raise _Interrupted

    monkeypatch.setattr(V._checkpoint, "save_loop_state", killed_after_epoch_two)
    with pytest.raises(_Interrupted):
        V.fit_vae(key, small_vae(seed=5), x, 0.05, checkpoint_path=path, **opts)
    # The second call trains only epochs 3 and 4, and ends where the full run ended.
    saved_epochs = []
    monkeypatch.setattr(
        V._checkpoint, "save_loop_state", lambda *a: (save(*a), saved_epochs.append(a[1].epoch))
    )
    resumed = small_vae(seed=5)
    history = V.fit_vae(key, resumed, x, 0.05, checkpoint_path=path, **opts)
    monkeypatch.undo()
    assert saved_epochs == [3, 4]
    assert history.validation_loss == full_history.validation_loss
    for (p, a), (_, b) in zip(
        jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(nnx.state(full, nnx.Param))),
        jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(nnx.state(resumed, nnx.Param))),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(p))
    with pytest.raises(ValueError, match="other settings"):
        V.fit_vae(key, small_vae(seed=5), x, 0.05, checkpoint_path=path, beta=2.0, **opts)
