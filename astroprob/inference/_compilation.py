"""Compiled programs shared across fits and posteriors of the same architecture.

Every fit traces fresh closures (the network's graph, the loss, the optimizer),
which `jax.jit` cannot recognise as seen before, so refitting the same
architecture on data of the same shapes, or drawing from the posterior of a
refitted or reloaded estimator, compiled again for seconds. Here the key of a
compiled program is its StableHLO text instead, with the backend and the
devices it runs on: identical programs reuse one executable.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["EXECUTABLES", "ExecutableCache", "SharedJit"]


class ExecutableCache:
    """Compiled programs shared by every fit whose program is the same.

    Each fit traces fresh closures, which `jax.jit` cannot recognise as seen
    before, so refitting the same architecture on data of the same shapes
    (ensembles of separate runs, simulation-based calibration, a notebook cell
    run again) compiled again for seconds. The traced program's StableHLO text
    is the key here instead: identical programs, on the same devices, reuse one
    executable. Hyperparameters that are compiled in as constants (learning
    rate, batch size, architecture) make a different program, and a fresh
    compilation. The least recently used programs are dropped beyond
    ``max_entries``.
    """

    def __init__(self, max_entries: int = 32):
        self.max_entries = max_entries
        self._programs: collections.OrderedDict[tuple, jax.stages.Compiled] = (
            collections.OrderedDict()
        )
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(lowered: jax.stages.Lowered, devices: tuple[int, ...] = ()) -> tuple:
        """What identifies a program: its text, the backend and the devices it runs on."""
        text = hashlib.sha256(lowered.as_text().encode()).hexdigest()
        return (text, jax.default_backend(), str(jax.config.jax_default_device), devices)

    def compile(
        self, lowered: Sequence[jax.stages.Lowered], devices: tuple[int, ...] = ()
    ) -> list[jax.stages.Compiled]:
        """The executables of ``lowered``; new ones compiled side by side.

        XLA compiles one program on one core and releases the GIL while it
        does, so the training epoch and the validation pass compile in parallel
        threads, one per CPU core at most (``lower`` traced them in Python).

        Args:
            lowered: the traced programs.
            devices: ids of the devices of the mesh the programs are sharded
                over (the program text names their positions, not their ids);
                empty for the default device.
        """
        keys = [self.key(low, devices) for low in lowered]
        missing = {k: low for k, low in zip(keys, lowered, strict=True) if k not in self._programs}
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        workers = min(len(missing), os.cpu_count() or 1)
        if workers > 1:
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                compiled = list(pool.map(lambda low: low.compile(), missing.values()))
        else:
            compiled = [low.compile() for low in missing.values()]
        self._programs.update(zip(missing, compiled, strict=True))
        for k in keys:
            self._programs.move_to_end(k)
        executables = [self._programs[k] for k in keys]
        while len(self._programs) > self.max_entries:
            self._programs.popitem(last=False)
        return executables

    def clear(self) -> None:
        """Drop every compiled program."""
        self._programs.clear()


EXECUTABLES = ExecutableCache()
"""The programs compiled in this process by the training loop and `SharedJit`."""


class SharedJit:
    """``jax.jit(fn)`` with its first argument bound, compiled through `EXECUTABLES`.

    Each new signature of the remaining arguments (shapes, dtypes, values of
    the static ones) is traced and lowered once per instance; the executable
    itself is shared with every other instance whose program is the same, e.g.
    the posterior of another fit of the same architecture.

    Args:
        fn: ``fn(bound, *args)``, traceable.
        bound: its first argument (e.g. a network's state), fixed.
        static_argnums: positions in ``args`` (not counting ``bound``) of
            hashable arguments that are compiled in.
    """

    def __init__(self, fn: Callable[..., Any], bound: Any, static_argnums: Sequence[int] = ()):
        self._static = frozenset(static_argnums)
        self._jitted = jax.jit(fn, static_argnums=tuple(i + 1 for i in self._static))
        # Host arrays (a loaded estimator's state) go to the default device once,
        # not at every call; the program runs where the state then lives.
        self._bound = jax.tree.map(
            lambda a: a if isinstance(a, jax.Array) else jax.device_put(a), bound
        )
        devices = {d.id for leaf in jax.tree.leaves(self._bound) for d in leaf.devices()}
        self._devices = tuple(sorted(devices))
        self._executables: dict[tuple, jax.stages.Compiled] = {}

    @property
    def num_compiled(self) -> int:
        """Number of signatures this instance has an executable for."""
        return len(self._executables)

    def __call__(self, *args: Any) -> Any:
        args = tuple(
            a if i in self._static else jax.tree.map(jnp.asarray, a) for i, a in enumerate(args)
        )
        signature = tuple(
            ("static", a)
            if i in self._static
            else (jax.tree.structure(a), tuple((v.shape, v.dtype) for v in jax.tree.leaves(a)))
            for i, a in enumerate(args)
        )
        executable = self._executables.get(signature)
        if executable is None:
            lowered = self._jitted.lower(self._bound, *args)
            executable = EXECUTABLES.compile([lowered], self._devices)[0]
            self._executables[signature] = executable
        dynamic = [a for i, a in enumerate(args) if i not in self._static]
        return executable(self._bound, *dynamic)
