"""Export posterior samples to ArviZ `InferenceData`, for the plots users already know.

ArviZ is optional (``pip install arviz``); it is imported only when
`to_inference_data` is called, and its absence raises an `ImportError` that
says how to install it.

Each parameter becomes a variable of the ``posterior`` group with dimensions
``(chain, draw)`` for one observation, or ``(chain, draw, object)`` for a
batch, with a single chain (NPE samples are independent draws, not a Markov
chain). Units go into each variable's ``attrs["units"]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import astropy.units as u
import numpy as np

__all__ = ["to_inference_data"]


def _import_arviz() -> Any:
    try:
        with warnings.catch_warnings():
            # ArviZ 0.2x announces its 1.0 refactor on import; a notice, not a problem here.
            warnings.filterwarnings("ignore", "\nArviZ is undergoing", FutureWarning)
            import arviz
    except ImportError as err:
        raise ImportError(
            "to_inference_data needs ArviZ, which is not installed: "
            "pip install arviz  (or pip install 'astroprob[arviz]')"
        ) from err
    return arviz


def to_inference_data(
    samples: Any,
    parameter_names: Sequence[str],
    *,
    units: Any = None,
    ids: Any = None,
) -> Any:
    """Posterior samples as an `arviz.InferenceData` with one chain.

    Args:
        samples: ``(num_samples, dim)`` for one observation or
            ``(n_obs, num_samples, dim)`` for a batch (as `astroprob.Posterior.sample`).
        parameter_names: ``dim`` variable names (e.g. ``task.parameter_names``).
        units: ``dim`` units or ``None`` entries (e.g. ``task.parameter_units``).
        ids: ``n_obs`` coordinates of the ``object`` dimension; default ``0..n_obs-1``.

    Returns:
        ``arviz.InferenceData`` with a ``posterior`` group.

    Raises:
        ImportError: if ArviZ is not installed.
        ValueError: if the shapes, names, units or ids disagree.

    Examples:
        >>> import numpy as np
        >>> idata = to_inference_data(np.zeros((100, 2)), ["a", "b"])  # doctest: +SKIP
        >>> idata.posterior["a"].shape  # doctest: +SKIP
        (1, 100)
    """
    array = np.asarray(samples)
    dim = len(parameter_names)
    if array.ndim not in (2, 3) or array.shape[-1] != dim:
        raise ValueError(
            f"samples: expected shape (num_samples, {dim}) or (n_obs, num_samples, {dim}); "
            f"got {array.shape}"
        )
    if len(set(parameter_names)) != dim:
        raise ValueError(f"parameter_names: expected distinct names; got {list(parameter_names)}")
    units = (None,) * dim if units is None else tuple(units)
    if len(units) != dim:
        raise ValueError(f"units: expected {dim} entries; got {len(units)}")
    arviz = _import_arviz()
    if array.ndim == 2:
        posterior = {name: array[None, :, j] for j, name in enumerate(parameter_names)}
        coords, dims = None, None
    else:
        ids = np.arange(array.shape[0]) if ids is None else np.asarray(ids)
        if ids.shape != (array.shape[0],):
            raise ValueError(f"ids: expected {array.shape[0]} identifiers; got shape {ids.shape}")
        # (n_obs, draw) -> (chain=1, draw, object)
        posterior = {name: array[:, :, j].T[None] for j, name in enumerate(parameter_names)}
        coords = {"object": ids}
        dims = {name: ["object"] for name in parameter_names}
    idata = arviz.from_dict(posterior=posterior, coords=coords, dims=dims)
    for name, unit in zip(parameter_names, units, strict=True):
        if unit is not None:
            idata.posterior[name].attrs["units"] = u.Unit(unit).to_string()
    return idata
