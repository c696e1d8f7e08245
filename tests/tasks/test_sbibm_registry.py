import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _sbibm_spec import (
    DIM,
    N_SIM,
    NAMES,
    OBS_DIM,
    UNIFORM_BOUND,
    WITH_LIKELIHOOD,
    shared_reference_root,
    tile,
)

import astroprob.tasks as tasks
from astroprob.tasks import Task


def test_names_are_the_sbibm_tasks():
    assert tasks.names() == NAMES


def test_all_is_explicit_and_importable():
    assert {"Task", "get", "names", "reference_posterior_samples"} <= set(tasks.__all__)
    for symbol in tasks.__all__:
        assert hasattr(tasks, symbol)
    assert callable(tasks.gaussian_linear.analytic_posterior)


def test_get_returns_one_cached_instance():
    first = tasks.get("two_moons")
    assert isinstance(first, Task)
    assert tasks.get("two_moons") is first
    first.run_simulator(jax.random.key(0), jnp.zeros((N_SIM, 2)))
    # the compiled simulator lives on the cached instance, so it is reused
    assert tasks.get("two_moons")._simulate_batch is first._simulate_batch


@pytest.mark.parametrize("bad", ["two-moons", "", "lotka_volterra", "TWO_MOONS"])
def test_get_unknown_name_lists_known_names(bad):
    with pytest.raises(ValueError, match="expected one of") as info:
        tasks.get(bad)
    for name in NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_task_metadata(name):
    task = tasks.get(name)
    assert task.name == name
    assert task.dim == DIM[name]
    assert task.parameter_names == tuple(f"theta_{j}" for j in range(1, DIM[name] + 1))
    assert task.observation_shape == (OBS_DIM[name],)
    assert task.description
    assert task.num_observations == 10
    assert (task.likelihood is not None) == (name in WITH_LIKELIHOOD)
    assert len(task.metadata["observation_seeds"]) == 10


@pytest.mark.parametrize("name", NAMES)
def test_observations_shapes_and_range(name):
    task = tasks.get(name)
    for i in range(1, 11):
        x = task.observation(i)
        theta = task.true_parameters_of(i)
        assert x.shape == (OBS_DIM[name],)
        assert x.dtype == jnp.float32
        assert theta.shape == (DIM[name],)
        assert bool(jnp.all(jnp.isfinite(x)))
        assert bool(jnp.all(jnp.isfinite(theta)))
        if name in UNIFORM_BOUND:
            assert np.all(np.abs(np.asarray(theta)) <= UNIFORM_BOUND[name])
    # the ten observations are distinct
    xs = np.stack([np.asarray(task.observation(i)) for i in range(1, 11)])
    assert len(np.unique(xs, axis=0)) == 10
    for bad in (0, 11, -1):
        with pytest.raises(ValueError, match="expected an integer in 1..10"):
            task.observation(bad)
        with pytest.raises(ValueError, match="expected an integer in 1..10"):
            task.true_parameters_of(bad)


def test_package_data_is_read_only():
    task = tasks.get("slcp")
    with pytest.raises(ValueError, match="read-only"):
        task.observations[0, 0] = 1.0


def _read_csv_row(path):
    with open(path) as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array([float(v) for v in rows[1]], dtype=np.float32)


_ROOT = shared_reference_root()
# The four tasks whose files are in ../shared/data (see its README, section 6).
_SHARED = ["two_moons", "gaussian_linear", "slcp", "gaussian_mixture"]


@pytest.mark.parametrize("name", _SHARED)
def test_observations_equal_sbibm_files(name):
    """Differential check of the package data against the sbibm CSVs kept in shared/data."""
    task = tasks.get(name)
    for i in range(1, 11):
        folder = _ROOT / name / "files" / f"num_observation_{i}"
        header, obs = _read_csv_row(folder / "observation.csv")
        assert header == [f"data_{j}" for j in range(1, OBS_DIM[name] + 1)]
        np.testing.assert_array_equal(np.asarray(task.observation(i)), obs)
        _, theta = _read_csv_row(folder / "true_parameters.csv")
        np.testing.assert_array_equal(np.asarray(task.true_parameters_of(i)), theta)
        _, seed = _read_csv_row(folder / "observation_seed.csv")
        assert task.metadata["observation_seeds"][i - 1] == int(seed[0])


@pytest.mark.parametrize("name", NAMES)
def test_simulate_shapes_dtypes_and_determinism(name, keys):
    task = tasks.get(name)
    key = next(keys)
    theta, x = task.simulate(key, N_SIM)
    assert theta.shape == (N_SIM, DIM[name])
    assert x.shape == (N_SIM, OBS_DIM[name])
    assert theta.dtype == x.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(x)))
    _, x2 = task.simulate(key, N_SIM)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(x2))
    _, x3 = task.simulate(next(keys), N_SIM)
    assert not np.array_equal(np.asarray(x[:10]), np.asarray(x3[:10]))
    # repeated θ gives independent simulations
    x_same = np.asarray(task.run_simulator(next(keys), tile(theta[0]))[:10])
    assert len(np.unique(x_same, axis=0)) == 10
