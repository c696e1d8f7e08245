"""The training loop's checkpoint/resume hook: a resumed run equals the uninterrupted one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from astroprob.inference._loop import LoopState, TrainingConfig, train


class _Linear(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.layer = nnx.Linear(3, 1, rngs=rngs)

    def __call__(self, x):
        return self.layer(x)[:, 0]


def _loss(model, batch):
    x, y = batch
    return (model(x) - y) ** 2


@pytest.fixture(scope="module")
def data():
    kx, kn = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (120, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5]) + 0.3 * jax.random.normal(kn, (120,))
    return (x[:100], y[:100]), (x[100:], y[100:])


CONFIG = TrainingConfig(
    learning_rate=1e-2, batch_size=20, max_epochs=8, patience=3, progress_bar=False
)


def _host(state: LoopState) -> tuple[dict, dict]:
    """Copy a state to the host (the next epoch reuses its device buffers)."""
    return jax.tree.map(np.array, state.arrays()), state.scalars()


def _run(data, **hooks):
    model = _Linear(nnx.Rngs(1))
    history = train(jax.random.key(2), model, _loss, *data, CONFIG, **hooks)
    return model, history


def test_resumed_run_equals_uninterrupted_run(data):
    saved = []
    full_model, full_history = _run(data, checkpoint=lambda s: saved.append(_host(s)))
    assert [s["epoch"] for _, s in saved] == list(range(1, len(saved) + 1))

    arrays, scalars = saved[2]  # "killed" after epoch 3
    model, history = _run(data, resume=lambda initial: initial.restored(arrays, scalars))
    assert history.train_loss == full_history.train_loss
    assert history.validation_loss == full_history.validation_loss
    assert history.best_epoch == full_history.best_epoch
    np.testing.assert_array_equal(model.layer.kernel[...], full_model.layer.kernel[...])
    np.testing.assert_array_equal(model.layer.bias[...], full_model.layer.bias[...])


def test_resume_none_starts_afresh_and_finished_state_trains_no_more(data):
    saved = []
    full_model, full_history = _run(data, checkpoint=lambda s: saved.append(_host(s)))
    model, history = _run(data, resume=lambda initial: None)
    assert history.validation_loss == full_history.validation_loss

    # Resuming the last state (training already finished) runs no epoch at all.
    arrays, scalars = saved[-1]
    calls = []
    model, history = _run(
        data,
        resume=lambda initial: initial.restored(arrays, scalars),
        checkpoint=calls.append,
    )
    assert calls == []
    assert history.validation_loss == full_history.validation_loss
    np.testing.assert_array_equal(model.layer.kernel[...], full_model.layer.kernel[...])


def test_a_different_state_gives_a_different_run(data):
    # Negative control: resuming from a perturbed state must not reproduce the run.
    saved = []
    _, full_history = _run(data, checkpoint=lambda s: saved.append(_host(s)))
    arrays, scalars = saved[1]
    arrays = dict(arrays, key=np.array(jax.random.key_data(jax.random.key(99))))
    _, history = _run(data, resume=lambda initial: initial.restored(arrays, scalars))
    assert history.validation_loss[:2] == full_history.validation_loss[:2]
    assert history.validation_loss[2:] != full_history.validation_loss[2:]
