import bz2

import numpy as np
import pytest
from _sbibm_spec import shared_reference_root

import astroprob.tasks as tasks
from astroprob.tasks import reference_posterior_samples

ENV = "ASTROPROB_REFERENCE_DATA"
FILE = "reference_posterior_samples.csv.bz2"


def write_samples(root, name, i, rows, header=None):
    folder = root / name / "files" / f"num_observation_{i}"
    folder.mkdir(parents=True, exist_ok=True)
    dim = len(rows[0])
    header = header or ",".join(f"parameter_{j}" for j in range(1, dim + 1))
    text = header + "\n" + "".join(",".join(str(v) for v in row) + "\n" for row in rows)
    with bz2.open(folder / FILE, "wt") as fh:
        fh.write(text)
    return folder / FILE


def test_reads_from_root_argument(tmp_path):
    rows = [[0.5, -0.25], [1.0, 2.0], [3.0, 4.0]]
    write_samples(tmp_path, "two_moons", 4, rows)
    samples = reference_posterior_samples("two_moons", 4, root=tmp_path)
    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples, np.array(rows, np.float32))
    # a single sample still comes back as (1, dim)
    write_samples(tmp_path, "two_moons", 5, [[0.1, 0.2]])
    assert reference_posterior_samples("two_moons", 5, root=str(tmp_path)).shape == (1, 2)


def test_env_var_names_the_root(tmp_path, monkeypatch):
    write_samples(tmp_path, "gaussian_mixture", 2, [[1.0, 2.0]])
    monkeypatch.setenv(ENV, str(tmp_path))
    np.testing.assert_array_equal(reference_posterior_samples("gaussian_mixture", 2), [[1.0, 2.0]])
    # an explicit root wins over the environment
    with pytest.raises(FileNotFoundError):
        reference_posterior_samples("gaussian_mixture", 2, root=tmp_path / "elsewhere")


def test_env_var_pointing_nowhere(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    monkeypatch.setenv(ENV, str(missing))
    with pytest.raises(FileNotFoundError, match=ENV) as info:
        reference_posterior_samples("slcp", 1)
    assert str(missing) in str(info.value)


def test_default_root_relative_to_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    shared = tmp_path / "shared" / "data" / "sbibm_reference_posteriors"
    write_samples(shared, "slcp", 3, [[1.0, 2.0, 3.0, 4.0, 5.0]])
    (tmp_path / "checkout").mkdir()
    monkeypatch.chdir(tmp_path / "checkout")
    np.testing.assert_array_equal(reference_posterior_samples("slcp", 3), [[1, 2, 3, 4, 5]])


def test_missing_file_says_where_it_looked(tmp_path):
    (tmp_path / "two_moons").mkdir()
    with pytest.raises(FileNotFoundError, match="observation 7") as info:
        reference_posterior_samples("two_moons", 7, root=tmp_path)
    expected = tmp_path / "two_moons" / "files" / "num_observation_7" / FILE
    assert str(expected) in str(info.value)


def test_missing_root_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="no reference posterior directory") as info:
        reference_posterior_samples("two_moons", 1, root=tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)


@pytest.mark.parametrize("i", [0, 11, -3])
def test_bad_observation_number(i, tmp_path):
    with pytest.raises(ValueError, match="expected an integer in 1..10"):
        reference_posterior_samples("two_moons", i, root=tmp_path)


def test_unknown_task_lists_known_names(tmp_path):
    with pytest.raises(ValueError, match="expected one of") as info:
        reference_posterior_samples("lotka_volterra", 1, root=tmp_path)
    assert "gaussian_linear" in str(info.value)


def test_wrong_columns_are_rejected(tmp_path):
    write_samples(tmp_path, "slcp", 1, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="expected 5 columns"):
        reference_posterior_samples("slcp", 1, root=tmp_path)
    write_samples(tmp_path, "two_moons", 1, [[1.0, 2.0]], header="a,b")
    with pytest.raises(ValueError, match="header"):
        reference_posterior_samples("two_moons", 1, root=tmp_path)


_ROOT = shared_reference_root()


@pytest.mark.parametrize("name", ["two_moons", "slcp"])
def test_shared_reference_samples_lie_in_the_prior(name, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    task = tasks.get(name)
    samples = reference_posterior_samples(name, 1)
    assert samples.shape == (10_000, task.dim)
    bound = {"two_moons": 1.0, "slcp": 3.0}[name]
    assert np.all(np.abs(samples) <= bound)
