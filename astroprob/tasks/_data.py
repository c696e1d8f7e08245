"""Package data of the sbibm benchmark tasks: observations 1-10 and fixed inputs.

The JSON files in ``astroprob/tasks/data/`` were converted once from the sbibm 1.1.0
wheel (``sbibm/tasks/<task>/files/num_observation_<i>/{observation,true_parameters,
observation_seed}.csv`` for ``i = 1..10``; for ``bernoulli_glm`` also
``observation_raw.csv`` and the torch tensors ``design_matrix.pt`` and
``stimulus_I.pt``). Every number is the float32 value sbibm stores, written with
the shortest decimal that round-trips. sbibm is MIT licensed; its license is
shipped as ``data/LICENSE.sbibm``.

References:
    Lueckmann, Boelts, Greenberg, Gonçalves & Macke (2021), "Benchmarking
    Simulation-Based Inference", AISTATS, https://arxiv.org/abs/2101.04653
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import numpy as np

_ARRAYS = ("observations", "true_parameters", "observations_raw", "design_matrix", "stimulus_I")


@functools.cache
def load_task_data(name: str) -> dict[str, Any]:
    """Read ``data/<name>.json``; numeric tables come back as read-only float32 arrays.

    Args:
        name: task name, e.g. ``"two_moons"``.

    Returns:
        A dict with ``observations`` ``(10, *observation_shape)``, ``true_parameters``
        ``(10, dim)``, ``observation_seeds`` (tuple of 10 ints), ``source`` (str), and
        task-specific extras (``bernoulli_glm``: ``design_matrix`` ``(100, 10)``,
        ``stimulus_I`` ``(100,)``, ``observations_raw`` ``(10, 100)``).
    """
    text = resources.files("astroprob.tasks").joinpath("data", f"{name}.json").read_text()
    raw = json.loads(text)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _ARRAYS:
            array = np.asarray(value, dtype=np.float32)
            array.setflags(write=False)
            out[key] = array
        elif isinstance(value, list):
            out[key] = tuple(value)
        else:
            out[key] = value
    return out


SBIBM_CITATION = (
    "Lueckmann et al. (2021), Benchmarking Simulation-Based Inference, AISTATS, "
    "https://arxiv.org/abs/2101.04653"
)


def theta_names(dim: int) -> tuple[str, ...]:
    """sbibm-style parameter names ``("theta_1", ..., "theta_<dim>")``."""
    return tuple(f"theta_{j}" for j in range(1, dim + 1))


def benchmark_metadata(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """Metadata shared by all sbibm tasks: citation, data source and observation seeds."""
    return {
        "benchmark": "sbibm",
        "sbibm_name": name,
        "reference": SBIBM_CITATION,
        "data_source": data["source"],
        "observation_seeds": data["observation_seeds"],
    }
