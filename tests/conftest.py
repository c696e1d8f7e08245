"""Shared test set-up: CPU only, NaNs raise, and a reproducible stream of PRNG keys."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_debug_nans", True)


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
