"""Read sbibm's reference posterior samples from a data directory.

The files are the ``reference_posterior_samples.csv.bz2`` of the sbibm 1.1.0 wheel
(MIT license): a header ``parameter_1,...,parameter_<dim>`` followed by one sample per
row. They are not shipped with the package; see ``shared/data/README.md``.

References:
    Lueckmann et al. (2021), "Benchmarking Simulation-Based Inference", AISTATS,
    https://arxiv.org/abs/2101.04653
"""

from __future__ import annotations

import bz2
import os
from pathlib import Path

import numpy as np

from astroprob.tasks._registry import get

ENV_VAR = "ASTROPROB_REFERENCE_DATA"
"""Environment variable naming the root directory of the reference posteriors."""
_RELATIVE = Path("..", "shared", "data", "sbibm_reference_posteriors")
_REPO_ROOT = Path(__file__).resolve().parents[2]


def _candidate_roots() -> list[Path]:
    env = os.environ.get(ENV_VAR)
    if env:
        return [Path(env)]
    return [Path.cwd() / _RELATIVE, _REPO_ROOT / _RELATIVE]


def reference_posterior_samples(
    name: str, i: int, *, root: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """Reference posterior samples for observation ``i`` of task ``name``.

    Reads ``<root>/<name>/files/num_observation_<i>/reference_posterior_samples.csv.bz2``.

    Args:
        name: task name, one of `astroprob.tasks.names`.
        i: observation number, 1-based as in sbibm (1..10).
        root: directory holding one folder per task. Defaults to the environment
            variable ``ASTROPROB_REFERENCE_DATA``, else the first existing of
            ``../shared/data/sbibm_reference_posteriors`` relative to the current
            directory and to the repository root.

    Returns:
        Samples, float32 array of shape ``(n, dim)`` (sbibm ships ``n = 10000``).

    Raises:
        ValueError: if ``name`` is unknown, ``i`` is not an integer in 1..10, or the file
            does not hold ``dim`` columns.
        FileNotFoundError: if no root directory or no file is found; the message says
            where it looked.
    """
    task = get(name)
    n_obs = task.num_observations
    if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 1 <= i <= n_obs:
        raise ValueError(f"i: expected an integer in 1..{n_obs}; got {i!r}")
    relative = Path(
        name, "files", f"num_observation_{int(i)}", "reference_posterior_samples.csv.bz2"
    )
    if root is not None:
        roots = [Path(root)]
        source = "the root argument"
    else:
        roots = _candidate_roots()
        source = f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "the default locations"
    existing = [r for r in roots if r.is_dir()]
    if not existing:
        looked = ", ".join(str(r) for r in roots)
        raise FileNotFoundError(
            f"no reference posterior directory found; looked in {looked} (from {source}); "
            f"pass root= or set ${ENV_VAR}"
        )
    path = existing[0] / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"no reference posterior samples for {name!r}, observation {i}: {path} does not exist "
            f"(root {existing[0]} from {source})"
        )
    with bz2.open(path, "rt") as fh:
        header = fh.readline().strip().split(",")
        samples = np.loadtxt(fh, delimiter=",", dtype=np.float32, ndmin=2)
    expected = [f"parameter_{j}" for j in range(1, task.dim + 1)]
    if header != expected or samples.shape[1] != task.dim:
        raise ValueError(
            f"{path}: expected {task.dim} columns with header {','.join(expected)}; "
            f"got header {','.join(header)} and shape {samples.shape}"
        )
    return samples
