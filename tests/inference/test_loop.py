"""Training loop: a resumed run equals the uninterrupted one; parameter averaging."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from astroprob.inference._compilation import EXECUTABLES, ExecutableCache
from astroprob.inference._loop import (
    LoopState,
    TrainingConfig,
    averaged_parameters,
    train,
    train_ensemble,
    with_parameter_average,
)


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


# ------------------------------------------------------------------ ensembles
def _run_ensemble(data, config=CONFIG, **hooks):
    models = [_Linear(nnx.Rngs(seed)) for seed in (1, 5, 7)]
    keys = jnp.stack([jax.random.key(2), jax.random.key(3), jax.random.key(4)])
    history = train_ensemble(keys, models, _loss, *data, config, **hooks)
    return models, history


@pytest.mark.parametrize("average_decay", [None, 0.8], ids=["iterates", "averaged"])
def test_ensemble_members_equal_separate_runs(data, average_decay):
    config = dataclasses.replace(CONFIG, average_decay=average_decay)
    models, history = _run_ensemble(data, config)
    for k, (seed, key) in enumerate([(1, 2), (5, 3), (7, 4)]):
        model = _Linear(nnx.Rngs(seed))
        alone = train(jax.random.key(key), model, _loss, *data, config)
        member = history.members[k]
        np.testing.assert_allclose(member.validation_loss, alone.validation_loss, rtol=1e-5)
        assert member.best_epoch == alone.best_epoch
        assert member.stopped_early == alone.stopped_early
        np.testing.assert_allclose(
            models[k].layer.kernel[...], model.layer.kernel[...], rtol=1e-5, atol=1e-6
        )
    assert history.best_epoch == max(m.best_epoch for m in history.members)


def test_resumed_ensemble_equals_uninterrupted_ensemble(data):
    saved = []
    full_models, full_history = _run_ensemble(data, checkpoint=lambda s: saved.append(_host(s)))
    arrays, scalars = saved[1]
    scalars = json.loads(json.dumps(scalars))  # the scalars survive a JSON round trip
    assert isinstance(scalars["best_loss"], list)
    models, history = _run_ensemble(data, resume=lambda initial: initial.restored(arrays, scalars))
    for member, full in zip(history.members, full_history.members, strict=True):
        assert member.validation_loss == full.validation_loss
    for model, full in zip(models, full_models, strict=True):
        np.testing.assert_array_equal(model.layer.kernel[...], full.layer.kernel[...])


def test_ensemble_rejects_mismatched_keys(data):
    with pytest.raises(ValueError, match=r"keys: expected shape \(2,\)"):
        train_ensemble(
            jax.random.split(jax.random.key(0), 3),
            [_Linear(nnx.Rngs(0)), _Linear(nnx.Rngs(1))],
            _loss,
            *data,
            CONFIG,
        )


def test_checkpoint_file_resumes_only_under_the_same_settings(data, tmp_path):
    from astroprob.inference import _checkpoint

    path = tmp_path / "checkpoint.msgpack"
    settings = {"support_transform": "soft_interval", "training": {"batch_size": 50}}
    states = []
    full_model, _ = _run(data, checkpoint=lambda s: states.append(s) if s.epoch == 2 else None)
    _checkpoint.save_loop_state(path, states[0], settings)

    def restore(template, expected=settings):
        return _checkpoint.load_loop_state(path, template, expected)

    model, _ = _run(data, resume=restore)
    np.testing.assert_array_equal(model.layer.kernel[...], full_model.layer.kernel[...])
    other = {"support_transform": "numpyro", "training": {"batch_size": 50}}
    with pytest.raises(ValueError, match=r"other settings \(support_transform\)"):
        _run(data, resume=lambda t: restore(t, other))
    _checkpoint.save_loop_state(path, states[0])  # as written before settings existed
    with pytest.raises(ValueError, match="older astroprob"):
        _run(data, resume=restore)


# ------------------------------------------------------------ parameter averaging
def test_parameter_average_is_the_bias_corrected_ema_of_the_iterates():
    decay = 0.9
    optimizer = with_parameter_average(optax.sgd(0.1), decay)
    params = {"w": jnp.array([1.0, -2.0])}
    state = optimizer.init(params)
    # Before any step the "average" is the parameters themselves.
    np.testing.assert_array_equal(averaged_parameters(state, decay, params)["w"], params["w"])
    iterates = []
    for _ in range(5):
        grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2 * jnp.array([1.0, 3.0])))(params)
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        iterates.append(np.asarray(params["w"]))
    weights = (1 - decay) * decay ** np.arange(4, -1, -1)
    expected = weights @ np.stack(iterates) / (1 - decay**5)
    np.testing.assert_allclose(averaged_parameters(state, decay, params)["w"], expected, rtol=1e-6)
    # The updates are the inner optimizer's: plain SGD moved the iterate.
    assert not np.allclose(expected, iterates[-1])


def test_training_keeps_the_average_at_the_best_epoch(data):
    config = dataclasses.replace(CONFIG, average_decay=0.8)
    saved = []
    copy = lambda s: jax.tree.map(np.array, (s.params, s.opt_state, s.best_params))  # noqa: E731
    model = _Linear(nnx.Rngs(1))
    history = train(
        jax.random.key(2), model, _loss, *data, config, checkpoint=lambda s: saved.append(copy(s))
    )
    params, opt_state, kept = saved[history.best_epoch]
    average = averaged_parameters(opt_state, 0.8, params)
    for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(average), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # The validation loss recorded is that of the averaged parameters ...
    x, y = data[1]
    loss = float(jnp.mean((model(x) - y) ** 2))
    np.testing.assert_allclose(history.validation_loss[history.best_epoch], loss, rtol=1e-5)
    # ... which differ from the last iterate (negative control).
    assert not np.allclose(kept["layer"]["kernel"], params["layer"]["kernel"])


def test_bad_average_decay_raises():
    with pytest.raises(ValueError, match="average_decay: expected None or a number in"):
        TrainingConfig(average_decay=1.0)


def test_refitting_the_same_program_reuses_its_executables(data):
    first_model, _ = _run(data)
    hits, misses = EXECUTABLES.hits, EXECUTABLES.misses
    second_model, _ = _run(data)
    assert (EXECUTABLES.hits, EXECUTABLES.misses) == (hits + 2, misses)
    # The reused executables give what a fresh compilation gives.
    EXECUTABLES.clear()
    fresh_model, _ = _run(data)
    assert EXECUTABLES.misses == misses + 2
    reused, fresh = (jax.tree.leaves(nnx.state(m)) for m in (second_model, fresh_model))
    for a, b in zip(reused, fresh, strict=True):
        np.testing.assert_array_equal(a, b)
    # Negative control: another learning rate is another training program (the
    # validation pass, which has no optimizer, stays the same).
    other = dataclasses.replace(CONFIG, learning_rate=3e-2)
    train(jax.random.key(2), _Linear(nnx.Rngs(1)), _loss, *data, other)
    assert (EXECUTABLES.hits, EXECUTABLES.misses) == (hits + 3, misses + 3)


def test_executable_cache_keeps_the_most_recently_used_programs():
    cache = ExecutableCache(max_entries=2)
    x = jnp.ones(3)
    double, square, negate = (
        jax.jit(f).lower(x) for f in (lambda a: 2 * a, lambda a: a * a, lambda a: -a)
    )
    first = cache.compile([double, square])
    assert cache.compile([double])[0] is first[0]  # double is now the most recent
    cache.compile([negate])  # evicts square
    assert cache.misses == 3
    cache.compile([double])
    assert cache.misses == 3
    cache.compile([square])
    assert cache.misses == 4
    np.testing.assert_array_equal(first[1](x), x * x)
    # The same text sharded over other devices is another program.
    cache.compile([square], devices=(0, 1))
    assert cache.misses == 5
