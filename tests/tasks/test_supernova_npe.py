"""NPE on supernova light curves with the LightCurveEncoder: trains, ignores padding, reloads.

Training compiles NPE's epoch, so those tests are marked slow; the fast ones check the
embedding contract and the z-scoring that NPE applies, without training.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import astroprob as ap
from astroprob.inference._network import context_size, data_statistics
from astroprob.tasks.supernova import SupernovaLightCurves, Survey


def _encoder(seed):
    return ap.nn.LightCurveEncoder(2, features=4, hidden=8, num_heads=1, rngs=nnx.Rngs(seed))


@pytest.fixture(scope="module")
def task():
    survey = Survey(bands=("g", "r"), max_points=8, time_range=(-30.0, 60.0), zero_point=24.0)
    return SupernovaLightCurves("Ia", survey=survey)


@pytest.fixture(scope="module")
def sims(task):
    theta, x = task.simulate(jax.random.key(0), 512)
    return np.asarray(theta), np.asarray(x)


def test_encoder_meets_the_embedding_contract(task):
    assert context_size(_encoder(0), task.observation_shape) == 4
    npe = ap.NPE(task, embedding=_encoder(0))
    assert not npe.is_fitted


def test_encoder_ignores_padding_of_z_scored_simulations(sims):
    # What NPE does before calling the embedding: one global shift and scale for the array.
    _, x = sims
    shift, scale = data_statistics(jnp.asarray(x), per_feature=False)
    padded = x[..., 3] == 0
    junk = x.copy()
    noise = np.random.default_rng(0).normal(0, 1e3, size=x[..., :3].shape).astype(np.float32)
    junk[..., :3] = np.where(padded[..., None], noise, x[..., :3])
    encoder = _encoder(0)
    graphdef, state = nnx.split(encoder)
    encode = jax.jit(lambda a: nnx.merge(graphdef, state)((a - shift) / scale))
    np.testing.assert_array_equal(np.asarray(encode(junk)), np.asarray(encode(x)))


@pytest.fixture(scope="module")
def fitted(task, sims):
    theta, x = sims
    npe = ap.NPE(task, "mdn", embedding=_encoder(0), num_components=2, hidden_features=16)
    npe.fit(jax.random.key(1), theta, x, max_epochs=3, batch_size=64, progress_bar=False)
    return npe, np.asarray(x[:4]), np.asarray(theta[:4])


@pytest.mark.slow
def test_trains_and_samples_inside_the_prior(task, fitted):
    npe, x, _ = fitted
    losses = npe.history.train_loss
    assert len(losses) == 3
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    samples = np.asarray(npe.posterior(x).sample(jax.random.key(2), 50))
    assert samples.shape == (4, 50, task.dim)
    low, high = task.type_bounds
    assert np.all((samples >= low[0]) & (samples <= high[0]))


@pytest.mark.slow
def test_padding_is_ignored_after_npe_z_scoring(fitted):
    # NPE z-scores the whole array before the encoder sees it; the padded entries must
    # still have no effect, whatever raw values they hold.
    npe, x, theta = fitted
    padded = x[..., 3] == 0
    assert padded.any()
    junk = x.copy()
    noise = np.random.default_rng(0).normal(0, 1e3, size=x[..., :3].shape).astype(np.float32)
    junk[..., :3] = np.where(padded[..., None], noise, x[..., :3])
    lp = np.asarray(npe.posterior(x).log_prob(theta[:, None]))
    lp_junk = np.asarray(npe.posterior(junk).log_prob(theta[:, None]))
    np.testing.assert_array_equal(lp_junk, lp)
    assert np.all(np.isfinite(lp))


@pytest.mark.slow
def test_save_and_load_with_the_encoder(task, fitted, tmp_path):
    npe, x, theta = fitted
    npe.save(tmp_path / "run")
    loaded = ap.NPE.load(tmp_path / "run", task=task, embedding=_encoder(7))
    np.testing.assert_allclose(
        np.asarray(loaded.posterior(x).log_prob(theta[:, None])),
        np.asarray(npe.posterior(x).log_prob(theta[:, None])),
        rtol=1e-5,
    )
