"""Data-parallel (and member-parallel) training with `jax.sharding`.

The training loop lays its devices out on a two-axis mesh ``("members",
"data")``. Minibatches are split along ``"data"`` (each device computes the
loss of its slice; XLA sums the gradients across devices), while parameters
and optimizer state are replicated along ``"data"``. An ensemble's stacked
members are split along ``"members"``: with ``K`` members on ``n`` devices the
mesh is ``gcd(K, n) x n / gcd(K, n)``. Nothing here schedules anything: the
compiled program is the same as on one device, partitioned by XLA (GSPMD).

On several hosts, call ``jax.distributed.initialize()`` first in every
process (it reads SLURM's environment variables); `jax.devices` then lists
the devices of all hosts and the same code trains across them, provided every
process passes the same simulations and keys.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MEMBERS = "members"
DATA = "data"


def training_mesh(num_devices: int | None, num_members: int | None = None) -> Mesh | None:
    """The ``("members", "data")`` mesh over the first ``num_devices`` devices.

    Args:
        num_devices: how many of ``jax.devices()`` to use; ``None`` for all.
        num_members: ensemble size (``None`` for a single network).

    Returns:
        The mesh, or ``None`` when training runs on one device (no sharding at all).

    Raises:
        ValueError: if more devices are requested than exist.
    """
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if n > len(devices):
        raise ValueError(
            f"devices: expected at most the {len(devices)} available devices; got {num_devices}"
        )
    if n == 1:
        return None
    m = math.gcd(num_members or 1, n)
    return Mesh(np.asarray(devices[:n]).reshape(m, n // m), (MEMBERS, DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def member_sharded(mesh: Mesh) -> NamedSharding:
    """The leading (member) axis is split over ``"members"``; replicated over ``"data"``."""
    return NamedSharding(mesh, PartitionSpec(MEMBERS))


def put(tree: Any, sharding: NamedSharding) -> Any:
    """Place every array of ``tree`` with ``sharding`` (works across hosts, too).

    Each process supplies its own copy of the full arrays, as with
    ``jax.make_array_from_callback``; typed PRNG keys are placed through
    their raw ``uint32`` data.
    """

    def place(a: Any) -> Any:
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(a)
            return jax.random.wrap_key_data(place(jax.random.key_data(a)), impl=impl)
        host = np.asarray(a)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(place, tree)


def batch_constraint(mesh: Mesh | None) -> Any:
    """``f(batch_array)`` that splits a minibatch's leading axis over ``"data"``."""
    if mesh is None:
        return lambda a: a
    sharding = NamedSharding(mesh, PartitionSpec(DATA))
    return lambda a: jax.lax.with_sharding_constraint(a, sharding)
