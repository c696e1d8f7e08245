"""Saving network weights without pickle: msgpack of raw array bytes, written atomically.

A weights file maps the '/'-joined path of every array in a Flax NNX pure-dict
state to its dtype, shape and raw bytes. Loading fills a freshly built network
of the same architecture, so nothing in the file is ever executed, and the
round trip is bit-exact.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import msgpack
import numpy as np

WEIGHTS_FORMAT = "astroprob-weights-v1"


def flatten_state(tree: Any) -> dict[str, np.ndarray]:
    """``{"a/b/0/kernel": array}`` for every leaf of a nested (pure-dict) state."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {"/".join(_key_name(k) for k in path): np.asarray(v) for path, v in leaves}


def unflatten_like(template: Any, arrays: dict[str, np.ndarray], *, source: str) -> Any:
    """Put ``arrays`` into the structure of ``template``, checking names, shapes and dtypes.

    Raises:
        ValueError: if the file's arrays do not match the network built from the config.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = ["/".join(_key_name(k) for k in path) for path, _ in leaves]
    missing = sorted(set(names) - set(arrays))
    extra = sorted(set(arrays) - set(names))
    if missing or extra:
        raise ValueError(
            f"{source}: the saved weights do not match the network architecture "
            f"(missing {missing[:5]}, unexpected {extra[:5]})"
        )
    out = []
    for name, (_, ref) in zip(names, leaves, strict=True):
        arr = arrays[name]
        if arr.shape != tuple(ref.shape) or arr.dtype != ref.dtype:
            raise ValueError(
                f"{source}: weight {name!r}: expected shape {tuple(ref.shape)} and dtype "
                f"{ref.dtype}; got {arr.shape} and {arr.dtype}"
            )
        out.append(arr)
    return jax.tree_util.tree_unflatten(treedef, out)


def encode_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """Msgpack bytes of named arrays (C-order raw bytes, dtype and shape kept)."""
    payload = {
        name: {
            "dtype": a.dtype.str,
            "shape": list(a.shape),
            "data": np.ascontiguousarray(a).tobytes(),
        }
        for name, a in arrays.items()
    }
    return msgpack.packb({"format": WEIGHTS_FORMAT, "arrays": payload}, use_bin_type=True)


def decode_arrays(blob: bytes, *, source: str) -> dict[str, np.ndarray]:
    """Inverse of `encode_arrays`.

    Raises:
        ValueError: if the bytes are not an astroprob weights file.
    """
    try:
        data = msgpack.unpackb(blob, raw=False)
        if data.get("format") != WEIGHTS_FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        return {
            name: np.frombuffer(item["data"], dtype=np.dtype(item["dtype"])).reshape(item["shape"])
            for name, item in data["arrays"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError, msgpack.UnpackException) as err:
        raise ValueError(
            f"{source}: expected an astroprob weights file ({WEIGHTS_FORMAT}); could not read "
            f"it: {err}"
        ) from err


def sha256(blob: bytes) -> str:
    """Hex digest, stored in the config to detect a weights file from another run."""
    return hashlib.sha256(blob).hexdigest()


def publish_mode(tmp: str | Path, path: Path) -> None:
    """Give the temporary file ``tmp`` the permissions ``path`` should end up with.

    ``mkstemp`` creates files readable by their owner only; a file written
    atomically keeps the mode of the file it replaces, or else gets the usual
    mode of a new file (``0o666`` less the umask), so collaborators can read runs
    and catalogs as they could any other file.
    """
    if path.exists():
        mode = path.stat().st_mode & 0o777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)


def write_atomic(path: Path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` through a temporary file and a rename.

    A crash leaves either the old file or the new one, never a half-written one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        publish_mode(tmp, path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """`write_atomic` for a JSON document."""
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


# ------------------------------------------------------------- training checkpoints
CHECKPOINT_FORMAT = "astroprob-checkpoint-v1"


def encode_checkpoint(arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> bytes:
    """One msgpack document holding named arrays (`encode_arrays`) and JSON scalars.

    Arrays and scalars travel in one file so that a single atomic rename
    replaces both: they can never come from two different epochs.
    """
    return msgpack.packb(
        {
            "format": CHECKPOINT_FORMAT,
            "scalars": json.dumps(scalars, sort_keys=True),
            "arrays": encode_arrays(arrays),
        },
        use_bin_type=True,
    )


def decode_checkpoint(blob: bytes, *, source: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of `encode_checkpoint`.

    Raises:
        ValueError: if the bytes are not an astroprob training checkpoint.
    """
    try:
        data = msgpack.unpackb(blob, raw=False)
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"format {found!r}")
        scalars = json.loads(data["scalars"])
        arrays_blob = data["arrays"]
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as err:
        raise ValueError(
            f"{source}: expected an astroprob training checkpoint ({CHECKPOINT_FORMAT}); could "
            f"not read it: {err}"
        ) from err
    return decode_arrays(arrays_blob, source=source), scalars


def save_loop_state(path: Path, state: Any, settings: dict[str, Any] | None = None) -> None:
    """Write a training loop's `LoopState` to ``path`` atomically (no pickle).

    Args:
        path: the checkpoint file.
        state: an `astroprob.inference._loop.LoopState`.
        settings: JSON-serialisable settings the run must be resumed with (e.g.
            the training options and the prior's bijection); `load_loop_state`
            refuses to resume under different ones.
    """
    arrays = flatten_state(state.arrays())
    scalars = {**state.scalars(), "settings": settings}
    write_atomic(Path(path), encode_checkpoint(arrays, scalars))


def load_loop_state(path: Path, template: Any, settings: dict[str, Any] | None = None) -> Any:
    """Read a checkpoint written by `save_loop_state` into the structure of ``template``.

    Args:
        path: the checkpoint file.
        template: the initial `LoopState` of the loop that resumes (gives the
            structure, shapes and dtypes the saved arrays must match).
        settings: the settings of the resuming run; they must equal those saved.

    Returns:
        The saved `LoopState`.

    Raises:
        FileNotFoundError: if there is no checkpoint.
        ValueError: if the file is not a checkpoint, does not fit the network,
            or was written under other settings.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected a training checkpoint")
    arrays, scalars = decode_checkpoint(path.read_bytes(), source=str(path))
    saved = scalars.get("settings")
    if saved != settings:
        differ = sorted(
            k
            for k in set(saved or {}) | set(settings or {})
            if (saved or {}).get(k) != (settings or {}).get(k)
        )
        raise ValueError(
            f"{path}: written under other settings ({', '.join(differ)}) or by an older "
            "astroprob; resuming would mix them. Remove the checkpoint to train afresh"
        )
    tree = unflatten_like(template.arrays(), arrays, source=str(path))
    return template.restored(tree, scalars)
