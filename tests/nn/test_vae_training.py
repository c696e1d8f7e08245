"""ConvVAE trained on small SersicGalaxy stamps: the loss falls, atypicality, NPE embedding."""

import math

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from astropy.table import QTable
from flax import nnx

import astroprob as ap
from astroprob.nn import vae as V
from astroprob.tasks import SersicGalaxy


def small_task():
    """32×32 stamps with a narrow flux and size range: learnable in a few CPU epochs."""
    return SersicGalaxy(
        stamp_size=32,
        pixel_scale=0.15 * u.arcsec,
        noise="gaussian",
        flux_prior=dist.LogUniform(3e3, 3e4),
        size_prior=dist.Uniform(0.2, 0.6),
    )


def noise_variance(task):
    return float(task.noise_variance(jnp.zeros((1, 1)))[0, 0])


@pytest.mark.slow
def test_training_lowers_the_validation_loss_and_changes_the_weights():
    task = small_task()
    _, x = task.simulate(jax.random.key(0), 240)
    vae = V.ConvVAE((32, 32), latent_dim=4, channels=(4, 8), hidden=16, rngs=nnx.Rngs(1))
    before = jax.tree.map(jnp.copy, nnx.state(vae, nnx.Param))
    history = V.fit_vae(
        jax.random.key(2),
        vae,
        x,
        noise_variance(task),
        max_epochs=8,
        batch_size=40,
        learning_rate=2e-3,
        progress_bar=False,
    )
    assert history.best_validation_loss < 0.8 * history.validation_loss[0]
    assert history.train_loss[-1] < history.train_loss[0]
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, nnx.state(vae, nnx.Param))
    assert all(jax.tree.leaves(changed))
    np.testing.assert_allclose(float(vae.data_scale[...]), np.std(np.asarray(x)), rtol=0.3)


@pytest.mark.slow
def test_frozen_encoder_trains_with_npe_and_stays_frozen():
    task = small_task()
    vae = V.ConvVAE((32, 32), latent_dim=4, channels=(4, 8), hidden=16, rngs=nnx.Rngs(3))
    theta = task.prior.sample(jax.random.key(4), (40,))
    x = 10.0 * jax.random.normal(jax.random.key(5), (40, 32, 32))
    embedding = V.VAEEmbedding(vae)
    npe = ap.NPE(task, "mdn", embedding=embedding, x_scaling="none", num_components=2)
    npe.fit(jax.random.key(6), theta, x, max_epochs=1, batch_size=20, progress_bar=False)
    trained = npe.network.embedding
    np.testing.assert_array_equal(trained(x[:3]), embedding(x[:3]))
    assert trained.trainable is False


@pytest.fixture(scope="module")
def trained():
    task = small_task()
    _, x = task.simulate(jax.random.key(10), 1000)
    variance = noise_variance(task)
    vae = V.ConvVAE((32, 32), latent_dim=6, channels=(8, 16), hidden=32, rngs=nnx.Rngs(11))
    V.fit_vae(
        jax.random.key(12),
        vae,
        x[:600],
        variance,
        max_epochs=25,
        batch_size=50,
        learning_rate=1e-3,
        progress_bar=False,
    )
    return vae, x, variance


@pytest.mark.slow
def test_atypicality_flags_shifted_and_noisy_stamps_but_not_held_out_ones(trained):
    vae, x, var = trained
    reference = V.fit_atypicality(jax.random.key(13), vae, x[600:800], var, num_samples=4)
    held_out = x[800:]
    # Negative control: new draws from the training distribution look typical.
    typical = V.score_atypicality(jax.random.key(14), vae, reference, held_out, var)
    assert 0.35 < float(np.mean(typical.score)) < 0.65
    assert float(np.mean(typical.flagged)) < 0.05
    # Positive controls: pure noise five times too strong, and galaxies moved off-centre.
    noise = 5.0 * math.sqrt(var) * jax.random.normal(jax.random.key(15), (50, 32, 32))
    loud = V.score_atypicality(jax.random.key(16), vae, reference, noise, var)
    assert float(np.mean(loud.flagged)) == 1.0
    shifted = V.score_atypicality(
        jax.random.key(17), vae, reference, jnp.roll(held_out, (9, 9), axis=(1, 2)), var
    )
    assert float(np.mean(shifted.score > typical.score)) > 0.9
    assert float(np.mean(shifted.flagged)) > 0.5
    # The flag lands in a posterior-summary-like table, one row per observation.
    table = QTable({"obs": np.arange(len(held_out))})
    V.add_atypicality_columns(table, shifted)
    assert table["atypicality_flag"].dtype == bool
    np.testing.assert_array_equal(table["atypicality"], shifted.score)
    with pytest.raises(ValueError, match="atypicality: expected 199 observations"):
        V.add_atypicality_columns(QTable({"obs": np.arange(199)}), shifted)
