"""Shared pieces of the supervised estimators (classifier, Bayesian regressor).

A `FeatureNetwork` z-scores the data, applies an optional embedding network
(or flattens), and maps the result through an MLP trunk to features φ(x). The
classifier puts a softmax layer on φ, the regressor a Gaussian mean and scale;
the Laplace approximation of `astroprob.inference.bnn` acts on that last
layer. Also here: input checks and saving/loading without pickle (config JSON
plus a msgpack weights file with a checksum, as for `NPE`).
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from astroprob._version import __version__
from astroprob.inference import _checkpoint
from astroprob.inference._network import Statistic, data_statistics

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.msgpack"
X_SCALINGS = ("auto", "per_feature", "global", "none")
KERNEL_INIT = nnx.initializers.variance_scaling(1.0, "fan_in", "normal")
"""LeCun initialisation with an untruncated normal (compiles faster than the truncated one)."""


def linear(in_features: int, out_features: int, *, rngs: nnx.Rngs) -> nnx.Linear:
    """A dense layer with `KERNEL_INIT` weights and zero bias."""
    return nnx.Linear(in_features, out_features, kernel_init=KERNEL_INIT, rngs=rngs)


class FeatureNetwork(nnx.Module):
    """``x -> φ(x)``: z-scoring, embedding (or flattening), then ``depth`` GELU layers.

    Args:
        embedding: module mapping z-scored data ``(batch, *obs_shape)`` to
            ``(batch, features)``, or ``None`` to flatten the data.
        observation_shape: shape of one observation.
        hidden: width of the trunk layers.
        depth: number of trunk layers (0: φ is the embedding output itself).
        x_shift, x_scale: z-score of the data, ``obs_shape`` or ``()``.
        rngs: random state for the initial weights.
    """

    def __init__(
        self,
        embedding: nnx.Module | None,
        observation_shape: tuple[int, ...],
        *,
        hidden: int,
        depth: int,
        x_shift: Array,
        x_scale: Array,
        rngs: nnx.Rngs,
    ):
        self.embedding = embedding
        self.x_shift = Statistic(jnp.asarray(x_shift, jnp.float32))
        self.x_scale = Statistic(jnp.asarray(x_scale, jnp.float32))
        size = _embedded_size(embedding, observation_shape)
        self.layers = nnx.List()
        for _ in range(depth):
            self.layers.append(linear(size, hidden, rngs=rngs))
            size = hidden
        self.num_features = size

    def __call__(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch features"]:
        """Features of a batch of raw observations."""
        z = (x - self.x_shift[...]) / self.x_scale[...]
        h = z.reshape(z.shape[0], -1) if self.embedding is None else self.embedding(z)
        for layer in self.layers:
            h = jax.nn.gelu(layer(h))
        return h


def _embedded_size(embedding: nnx.Module | None, observation_shape: tuple[int, ...]) -> int:
    if embedding is None:
        return math.prod(observation_shape)
    out = nnx.eval_shape(lambda m: m(jnp.zeros((1, *observation_shape))), embedding)
    if len(out.shape) != 2 or out.shape[0] != 1:
        raise ValueError(
            "embedding: expected an output of shape (batch, features) for an input "
            f"(1, {', '.join(map(str, observation_shape))}); got {tuple(out.shape)}"
        )
    return int(out.shape[1])


@functools.partial(jax.jit, static_argnames=("graphdef", "method"))
def apply_method(graphdef: Any, state: Any, x: Array, *, method: str) -> Any:
    """``getattr(nnx.merge(graphdef, state), method)(x)``, compiled once per architecture.

    The architecture (``graphdef``) is a static argument and the weights are an
    argument, so new weights (a refitted temperature, a loaded run) reuse the
    compiled function.
    """
    return getattr(nnx.merge(graphdef, state), method)(x)


def bind(network: nnx.Module, method: str) -> Any:
    """``x -> network.method(x)`` through `apply_method`, for the network's current state."""
    graphdef, state = nnx.split(network)
    return functools.partial(apply_method, graphdef=graphdef, state=state, method=method)


def batched(fn: Any, x: np.ndarray, chunk: int = 512) -> np.ndarray:
    """``fn(x)`` evaluated in fixed-size chunks, so that calls of any ``n`` share compilations.

    ``n >= chunk`` uses chunks of ``chunk`` rows; a smaller ``n`` is padded to the
    next power of two, so at most ``log2(chunk) + 1`` shapes are ever compiled.
    ``fn`` maps ``(chunk, ...)`` to ``(..., chunk, k)``; results are joined on axis -2.
    """
    n = len(x)
    chunk = min(chunk, 1 << max(0, (n - 1).bit_length()))
    out = []
    for start in range(0, n, chunk):
        part = x[start : start + chunk]
        pad = chunk - len(part)
        if pad:
            part = np.concatenate([part, np.repeat(part[:1], pad, axis=0)])
        out.append(np.asarray(fn(x=jnp.asarray(part)))[..., : chunk - pad, :])
    return np.concatenate(out, axis=-2)


def check_architecture(hidden: Any, depth: Any, x_scaling: Any, embedding: Any) -> None:
    """Raise a clear error for bad constructor options shared by the estimators."""
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden: expected a positive integer; got {hidden!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth: expected an integer >= 0; got {depth!r}")
    if x_scaling not in X_SCALINGS:
        raise ValueError(f"x_scaling: expected one of {X_SCALINGS}; got {x_scaling!r}")
    if embedding is not None and not isinstance(embedding, nnx.Module):
        raise TypeError(
            f"embedding: expected a flax.nnx.Module or None; got {type(embedding).__name__}"
        )


def as_observations(x: Any, observation_shape: tuple[int, ...] | None, name: str = "x") -> Any:
    """``x`` as float32 numpy ``(n, *obs_shape)``; one observation gains a batch axis.

    Raises:
        ValueError: if the shape does not match ``observation_shape``.
    """
    x = np.asarray(x, dtype=np.float32)
    if observation_shape is None:
        if x.ndim < 2:
            raise ValueError(f"{name}: expected shape (n, *observation_shape); got {x.shape}")
        return x
    if x.shape == observation_shape:
        x = x[None]
    if x.shape[1:] != observation_shape:
        raise ValueError(
            f"{name}: expected shape (n, {', '.join(map(str, observation_shape))}) or "
            f"{observation_shape}; got {x.shape}"
        )
    return x


def finite_rows(*arrays: np.ndarray, stacklevel: int = 3) -> tuple[np.ndarray, int]:
    """Indices of the rows finite in every array, and how many rows were excluded (warned)."""
    finite = np.ones(len(arrays[0]), bool)
    for a in arrays:
        finite &= np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    num_invalid = int((~finite).sum())
    if num_invalid:
        warnings.warn(
            f"{num_invalid} of {len(finite)} examples contain NaN or inf and are excluded "
            "from training",
            stacklevel=stacklevel,
        )
    return np.flatnonzero(finite), num_invalid


def x_statistics(x_train: np.ndarray, scaling: str) -> tuple[Array, Array, str]:
    """``(shift, scale, resolved scaling)`` of the data for `FeatureNetwork`."""
    if scaling == "auto":
        scaling = "per_feature" if x_train.ndim == 2 else "global"
    if scaling == "none":
        return jnp.zeros(()), jnp.ones(()), scaling
    shift, scale = data_statistics(jnp.asarray(x_train), per_feature=scaling == "per_feature")
    return shift, scale, scaling


def statistic_shape(observation_shape: tuple[int, ...], scaling: str) -> tuple[int, ...]:
    """Shape of the z-score statistics for a resolved ``scaling``."""
    return observation_shape if scaling == "per_feature" else ()


def saved_state(network: nnx.Module) -> nnx.State:
    """Everything but random-number state."""
    return nnx.state(network, nnx.Not(nnx.RngState))


def qualified_name(obj: Any) -> str:
    """``module.Class`` of an object."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def save_run(path: str | Path, network: nnx.Module, config: dict[str, Any]) -> Path:
    """Write ``config`` (JSON, with a weights checksum) and the network weights (msgpack)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arrays = _checkpoint.flatten_state(nnx.to_pure_dict(saved_state(network)))
    blob = _checkpoint.encode_arrays(arrays)
    config = {
        **config,
        "astroprob_version": __version__,
        "weights_sha256": _checkpoint.sha256(blob),
    }
    _checkpoint.write_atomic(path / WEIGHTS_FILE, blob)
    _checkpoint.write_json_atomic(path / CONFIG_FILE, config)
    return path


def read_config(path: str | Path, fmt: str, format_version: int) -> tuple[dict[str, Any], Path]:
    """The config of a run directory, after checking its format.

    Raises:
        FileNotFoundError: if the config or weights file is missing.
        ValueError: for another format, version, or a newer astroprob.
    """
    path = Path(path)
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    for p in (config_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file; expected a run directory from save()")
    config = json.loads(config_path.read_text())
    if config.get("format") != fmt:
        raise ValueError(
            f"{config_path}: expected an {fmt} config; got format {config.get('format')!r}"
        )
    if config.get("format_version") != format_version:
        raise ValueError(
            f"{config_path}: expected format_version {format_version}; got "
            f"{config.get('format_version')!r}"
        )
    saved = config.get("astroprob_version", "")
    if _version_tuple(saved) > _version_tuple(__version__):
        raise ValueError(
            f"{config_path}: written by astroprob {saved}, newer than the installed "
            f"{__version__}; upgrade astroprob to load it"
        )
    return config, path


def load_weights_into(path: Path, network: nnx.Module, config: dict[str, Any]) -> None:
    """Fill ``network`` (built with the saved architecture) from the weights file.

    Raises:
        ValueError: for a checksum mismatch or weights of another architecture.
    """
    weights_path = path / WEIGHTS_FILE
    blob = weights_path.read_bytes()
    if _checkpoint.sha256(blob) != config["weights_sha256"]:
        raise ValueError(
            f"{weights_path}: checksum does not match {path / CONFIG_FILE}; the directory "
            "mixes files from different runs or the weights are corrupted"
        )
    state = saved_state(network)
    arrays = _checkpoint.decode_arrays(blob, source=str(weights_path))
    pure = _checkpoint.unflatten_like(nnx.to_pure_dict(state), arrays, source=str(weights_path))
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(network, state)


def check_embedding_matches(config: dict[str, Any], embedding: nnx.Module | None) -> None:
    """Raise if a run trained with (without) an embedding is loaded without (with) one."""
    if config["embedding"] is not None and embedding is None:
        raise ValueError(
            f"embedding: this run was trained with an embedding network "
            f"({config['embedding']}); pass a module of the same architecture"
        )
    if config["embedding"] is None and embedding is not None:
        raise ValueError("embedding: this run was trained without an embedding network; got one")


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in str(version).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
