"""Shared test set-up: CPU only, NaNs raise, and a reproducible stream of PRNG keys.

The default tier compiles without LLVM's optimisation passes
(``--xla_backend_optimization_level=0``). Its tests run many small programs
once each, so compilation is most of their time, and this halves it (a small
NPE fit: 8-11 s of compilation against 4.5 s). The programs are the same;
only their machine code is less optimised and runs slower, which the slow
tier, whose statistical tests train for long, would feel: it keeps XLA's
default. A level already set in ``XLA_FLAGS`` is kept.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_debug_nans", True)

FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"


def pytest_configure(config):
    """Fast compilation for the default tier (``-m "not slow"``), before JAX starts its backend."""
    flags = os.environ.get("XLA_FLAGS", "")
    default_tier = config.option.markexpr.strip() == "not slow"
    if default_tier and "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FAST_COMPILE_FLAG}".strip()


class KeyStream:
    """An endless, reproducible sequence of PRNG keys: ``next(keys)``."""

    def __init__(self, seed: int = 0):
        self._key = jax.random.key(seed)

    def __iter__(self):
        return self

    def __next__(self):
        self._key, sub = jax.random.split(self._key)
        return sub


@pytest.fixture
def keys():
    """A fresh key stream, seeded with 0, for each test."""
    return KeyStream(0)
