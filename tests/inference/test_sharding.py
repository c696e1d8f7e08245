"""Data-parallel and member-parallel training on 4 (forced CPU) devices equals one device.

The device count must be fixed before jax is imported, hence a subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

# A subprocess with four host devices compiles everything anew (~20 s).
pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp
    import numpyro.distributions as dist
    from astroprob.inference import NPE
    from astroprob.inference._sharding import training_mesh
    from astroprob.tasks import Task

    task = Task(
        name="gauss_sharding",
        prior=dist.Normal(jnp.zeros(2), 1.0).to_event(1),
        simulator=lambda key, theta: theta + 0.5 * jax.random.normal(key, (2,)),
        parameter_names=("a", "b"),
        observation_shape=(2,),
    )
    theta, x = task.simulate(jax.random.key(0), 360)
    options = dict(max_epochs=4, batch_size=40, learning_rate=3e-3, progress_bar=False)
    out = {"devices": len(jax.devices()), "mesh": dict(training_mesh(None, 2).shape)}
    for name, ensemble, key, devices in [
        ("single_1", None, 1, 1), ("single_4", None, 1, None),
        ("ensemble_1", 2, 1, 1), ("ensemble_4", 2, 1, None),
    ]:
        npe = NPE(task, "mdn", ensemble=ensemble, num_components=2, hidden_features=16)
        npe.fit(jax.random.key(key), theta, x, devices=devices, **options)
        h = npe.history
        runs = [h] if h.members is None else h.members
        out[name] = {
            "num_devices": h.num_devices,
            "train": [m.train_loss for m in runs],
            "val": [m.validation_loss for m in runs],
            "logp": npe.posterior(x[:3]).log_prob(theta[:3]).tolist(),
        }
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def runs():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def _close(a, b):
    return bool(
        len(a) == len(b)
        and all(abs(u - v) <= 1e-5 * (1 + abs(v)) for u, v in zip(a, b, strict=True))
    )


def test_four_devices_are_used(runs):
    assert runs["devices"] == 4
    assert runs["mesh"] == {"members": 2, "data": 2}
    assert runs["single_1"]["num_devices"] == 1
    assert runs["single_4"]["num_devices"] == 4
    assert runs["ensemble_4"]["num_devices"] == 4


def test_data_parallel_loss_curve_equals_one_device(runs):
    one, four = runs["single_1"], runs["single_4"]
    assert _close(four["train"][0], one["train"][0])
    assert _close(four["val"][0], one["val"][0])
    assert _close(four["logp"], one["logp"])
    # Negative control: the tolerance is tight enough to tell another run (member 1 of
    # the ensemble, other keys) apart.
    assert not _close(runs["ensemble_1"]["train"][1], one["train"][0])


def test_sharded_ensemble_equals_one_device(runs):
    one, four = runs["ensemble_1"], runs["ensemble_4"]
    for k in range(2):
        assert _close(four["train"][k], one["train"][k])
        assert _close(four["val"][k], one["val"][k])
    assert _close(four["logp"], one["logp"])
    assert not _close(one["train"][0], one["train"][1])
