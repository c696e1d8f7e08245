"""LatentPrior: a normalised density, fitted to a known bimodal aggregate posterior, saved, used."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from astroprob.nn import vae as V

SMALL_PRIOR = {"num_transforms": 3, "hidden_features": 16, "num_bins": 8}


class PixelMean(nnx.Module):
    """A parameter-free encoder: the mean pixel of each image, ``(batch, 1)``."""

    def __call__(self, x):
        return jnp.mean(x.reshape(x.shape[0], -1), axis=1, keepdims=True)


def two_cluster_vae():
    """A VAE whose posterior is N((0.5 + 2c, -c), 0.05²) for an image of constant value c."""
    vae = V.ConvVAE(
        (8, 8), latent_dim=2, channels=(4,), hidden=8, encoder=PixelMean(), rngs=nnx.Rngs(0)
    )
    vae.head.kernel[...] = jnp.array([[2.0, -1.0, 0.0, 0.0]])
    vae.head.bias[...] = jnp.array([0.5, 0.0, np.log(0.05), np.log(0.05)])
    return vae


def constant_images(key, n):
    """Images of constant value ±1 (half each, random order)."""
    c = jnp.where(jax.random.bernoulli(key, 0.5, (n,)), 1.0, -1.0)
    return jnp.broadcast_to(c[:, None, None], (n, 8, 8)), c


CENTRES = np.array([[2.5, -1.0], [-1.5, 1.0]])


@pytest.fixture(scope="module")
def fitted():
    vae = two_cluster_vae()
    x, _ = constant_images(jax.random.key(1), 400)
    prior = V.LatentPrior(2, **SMALL_PRIOR, rngs=nnx.Rngs(2))
    history = V.fit_latent_prior(
        jax.random.key(3),
        prior,
        vae,
        x,
        draws_per_image=4,
        max_epochs=60,
        batch_size=64,
        progress_bar=False,
    )
    return vae, prior, history


def test_log_prob_is_a_normalised_density_after_the_affine_map():
    prior = V.LatentPrior(2, **SMALL_PRIOR, rngs=nnx.Rngs(5))
    prior.shift[...] = jnp.array([1.0, -2.0])
    prior.scale[...] = jnp.array([0.5, 3.0])
    a = np.linspace(1.0 - 0.5 * 8, 1.0 + 0.5 * 8, 301)
    b = np.linspace(-2.0 - 3.0 * 8, -2.0 + 3.0 * 8, 301)
    grid = np.stack(np.meshgrid(a, b, indexing="ij"), axis=-1).reshape(-1, 2)
    density = np.exp(np.asarray(prior.log_prob(grid))).reshape(301, 301)
    mass = np.trapezoid(np.trapezoid(density, b, axis=1), a)
    assert abs(mass - 1.0) < 5e-3, mass
    # Samples have the quadrature's means.
    draws = np.asarray(prior.sample(jax.random.key(6), 20_000))
    marg_a = np.trapezoid(density, b, axis=1)
    mean_a = np.trapezoid(a * marg_a, a) / mass
    assert abs(draws[:, 0].mean() - mean_a) < 5 * draws[:, 0].std() / np.sqrt(len(draws))


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
def test_fitted_prior_finds_both_clusters_of_the_aggregate_posterior(fitted):
    vae, prior, history = fitted
    assert history.best_validation_loss < history.validation_loss[0]
    x, c = constant_images(jax.random.key(7), 200)
    mean, log_std = V.encode(vae, x)
    z = mean + jnp.exp(log_std) * jax.random.normal(jax.random.key(8), mean.shape)
    learned = float(jnp.mean(prior.log_prob(z)))
    standard = float(jnp.mean(jax.scipy.stats.norm.logpdf(z).sum(axis=1)))
    # Exact aggregate posterior: log(0.5) + 2 log N(0 | 0, 0.05) = 2.6 nats; N(0, I) gives -5.5.
    assert learned > standard + 5.0, (learned, standard)
    draws = np.asarray(prior.sample(jax.random.key(9), 4000))
    distance = np.linalg.norm(draws[:, None, :] - CENTRES[None], axis=-1)
    nearest = distance.argmin(axis=1)
    assert np.mean(distance.min(axis=1) < 0.5) > 0.95
    assert abs(np.mean(nearest == 0) - 0.5) < 0.05


def test_fit_moves_the_affine_map_to_the_draws(fitted):
    _, prior, _ = fitted
    # Mean of the clusters (0.5, 0); their half-separation gives the spread (2, 1).
    np.testing.assert_allclose(prior.shift[...], [0.5, 0.0], atol=0.25)
    np.testing.assert_allclose(prior.scale[...], [2.0, 1.0], rtol=0.05)


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
def test_generate_decodes_draws_from_the_prior(fitted):
    vae, prior, _ = fitted
    key = jax.random.key(10)
    images = V.generate(key, vae, 7, prior=prior)
    key_z, _ = jax.random.split(key)
    expected = vae.decode(prior.sample(key_z, 7))
    np.testing.assert_allclose(images, expected, rtol=1e-5, atol=1e-6)
    different = V.generate(key, vae, 7)
    assert not np.allclose(images, different)


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
def test_save_load_round_trip_keeps_the_prior_bit_exact(tmp_path, fitted):
    vae, prior, _ = fitted
    V.save_vae(vae, tmp_path / "run", latent_prior=prior)
    saved = V.load_vae(tmp_path / "run", encoder=PixelMean())
    z = prior.sample(jax.random.key(11), 50)
    np.testing.assert_array_equal(saved.latent_prior.log_prob(z), prior.log_prob(z))
    assert saved.latent_prior.config == prior.config
    blob = (tmp_path / "run" / V.PRIOR_WEIGHTS_FILE).read_bytes()
    assert not blob.startswith(b"\x80")  # not pickle
    (tmp_path / "run" / V.PRIOR_WEIGHTS_FILE).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ValueError, match="checksum does not match"):
        V.load_vae(tmp_path / "run", encoder=PixelMean())
    V.save_vae(vae, tmp_path / "plain")
    assert V.load_vae(tmp_path / "plain", encoder=PixelMean()).latent_prior is None


def test_bad_arguments_raise(fitted):
    vae, prior, _ = fitted
    x, _ = constant_images(jax.random.key(12), 20)
    other = V.LatentPrior(3, **SMALL_PRIOR, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="latent_dim: expected a positive int"):
        V.LatentPrior(0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="prior: expected latent_dim 2"):
        V.generate(jax.random.key(0), vae, 3, prior=other)
    # The package's own check, or the type checker the test suite runs under.
    with pytest.raises(TypeError, match="prior"):
        V.generate(jax.random.key(0), vae, 3, prior="normal")
    with pytest.raises(ValueError, match="draws_per_image"):
        V.fit_latent_prior(jax.random.key(0), prior, vae, x, draws_per_image=0)
    with pytest.raises(ValueError, match="prior: expected latent_dim 2"):
        V.fit_latent_prior(jax.random.key(0), other, vae, x)
    with pytest.raises(TypeError, match="unknown training option"):
        V.fit_latent_prior(jax.random.key(0), prior, vae, x, epochs=3)
    with pytest.raises(ValueError, match="x: expected shape"):
        V.fit_latent_prior(jax.random.key(0), prior, vae, x[:, :4])
    with pytest.raises(ValueError, match="z: expected"):
        prior.log_prob(jnp.zeros((4, 3)))
