"""The `Task`: a prior, a pure JAX simulator, and what the parameters mean."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.typing import ArrayLike
from jaxtyping import Array, Float, PRNGKeyArray

Simulator = Callable[[PRNGKeyArray, Float[Array, " dim"]], Array]
"""A simulator maps ``(key, theta)`` for ONE parameter vector to one observation."""


@dataclass(frozen=True, eq=False)
class Task:
    """A physical model M: a prior over θ and a simulator θ -> x.

    The simulator acts on one unbatched parameter vector; `simulate` batches it
    with ``vmap`` and compiles it once per sample count.

    Args:
        name: short identifier, e.g. ``"two_moons"``.
        prior: numpyro distribution with event shape ``(dim,)`` and empty batch shape.
        simulator: pure function ``(key, theta[dim]) -> x[*observation_shape]``.
        parameter_names: one name per parameter, ``len == dim``.
        observation_shape: shape of one observation ``x``.
        parameter_units: astropy units (or ``None`` for dimensionless), one per
            parameter; ``None`` means all dimensionless.
        likelihood: optional ``theta[dim] -> numpyro distribution over x``, for
            reference posteriors with MCMC.
        observations: optional array ``(n_obs, *observation_shape)`` of the
            benchmark observations; ``observation(i)`` returns row ``i - 1``.
        true_parameters: optional array ``(n_obs, dim)`` that generated them.
        description: one line for humans.
        metadata: free-form settings of the task (instrument, noise, ...).
        parameter_symmetry: how the parameters transform when the observation
            (an image) is rotated or mirrored, as representation names of
            `astroprob.nn.groups.Group.representation`, one per block of
            parameters in order: ``"trivial"`` or ``"sign"`` (one parameter),
            ``"spin<s>"`` (two: e.g. ``"spin2"`` for an ellipticity ``(e1, e2)``,
            ``"spin1"`` for a position ``(x, y)``, with ``x`` along the image's
            columns and ``y`` along its rows). ``None``: not declared. It lets
            `astroprob.NPE` make the posterior exactly equivariant
            (``symmetry=``).

    Raises:
        ValueError: if the prior's event shape does not match ``parameter_names``,
            or ``parameter_symmetry`` does not cover the parameters.
    """

    name: str
    prior: dist.Distribution
    simulator: Simulator
    parameter_names: tuple[str, ...]
    observation_shape: tuple[int, ...]
    parameter_units: tuple[u.UnitBase | None, ...] | None = None
    likelihood: Callable[[Array], dist.Distribution] | None = None
    observations: np.ndarray | None = field(default=None, repr=False)
    true_parameters: np.ndarray | None = field(default=None, repr=False)
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    parameter_symmetry: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        names = tuple(self.parameter_names)
        object.__setattr__(self, "parameter_names", names)
        object.__setattr__(self, "observation_shape", tuple(int(s) for s in self.observation_shape))
        if not isinstance(self.prior, dist.Distribution):
            raise TypeError(
                f"prior: expected a numpyro Distribution; got {type(self.prior).__name__}"
            )
        if self.prior.event_shape != (len(names),) or self.prior.batch_shape != ():
            raise ValueError(
                f"prior: expected event_shape ({len(names)},) and batch_shape () to match "
                f"{len(names)} parameter_names; got event_shape {self.prior.event_shape}, "
                f"batch_shape {self.prior.batch_shape} (use .to_event(1) on a batched prior)"
            )
        if self.parameter_units is not None:
            units = tuple(None if v is None else u.Unit(v) for v in self.parameter_units)
            if len(units) != len(names):
                raise ValueError(
                    f"parameter_units: expected {len(names)} entries; got {len(units)}"
                )
            object.__setattr__(self, "parameter_units", units)
        if self.parameter_symmetry is not None:
            if isinstance(self.parameter_symmetry, str):
                raise TypeError(
                    "parameter_symmetry: expected a sequence of block names, e.g. "
                    f"('trivial', 'spin2'); got the string {self.parameter_symmetry!r}"
                )
            blocks = tuple(self.parameter_symmetry)
            sizes = [symmetry_block_size(b) for b in blocks]
            if sum(sizes) != len(names):
                raise ValueError(
                    f"parameter_symmetry: expected blocks covering {len(names)} parameters; "
                    f"{blocks} cover {sum(sizes)}"
                )
            object.__setattr__(self, "parameter_symmetry", blocks)
        for attr, shape in (
            ("observations", self.observation_shape),
            ("true_parameters", (len(names),)),
        ):
            value = getattr(self, attr)
            if value is not None:
                value = np.asarray(value, dtype=np.float32)
                if value.ndim < 1 or value.shape[1:] != shape:
                    raise ValueError(
                        f"{attr}: expected shape (n_obs, {', '.join(map(str, shape))}); "
                        f"got {value.shape}"
                    )
                object.__setattr__(self, attr, value)

    @property
    def dim(self) -> int:
        """Number of parameters."""
        return len(self.parameter_names)

    @property
    def num_observations(self) -> int:
        """Number of stored benchmark observations (0 if none)."""
        return 0 if self.observations is None else len(self.observations)

    @functools.cached_property
    def _simulate_batch(self) -> Callable[[PRNGKeyArray, Array], Array]:
        simulator = self.simulator

        @jax.jit
        def run(key: PRNGKeyArray, theta: Array) -> Array:
            keys = jax.random.split(key, theta.shape[0])
            return jax.vmap(simulator)(keys, theta)

        return run

    @functools.cached_property
    def _sample_prior(self) -> Callable[[PRNGKeyArray, int], Array]:
        prior = self.prior
        return jax.jit(lambda key, n: prior.sample(key, (n,)), static_argnums=1)

    def sample_prior(self, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
        """Draw ``n`` parameter vectors from the prior; shape ``(n, dim)``."""
        return self._sample_prior(key, _check_count(n, "n"))

    def run_simulator(self, key: PRNGKeyArray, theta: ArrayLike) -> Array:
        """Simulate one observation per row of ``theta`` ``(n, dim)``; returns ``(n, *obs_shape)``.

        Raises:
            ValueError: if ``theta`` is not of shape ``(n, dim)``.
        """
        theta = jnp.asarray(theta)
        if theta.ndim != 2 or theta.shape[1] != self.dim:
            raise ValueError(f"theta: expected shape (n, {self.dim}); got {theta.shape}")
        return self._simulate_batch(key, theta)

    def simulate(self, key: PRNGKeyArray, n: int) -> tuple[Float[Array, "n dim"], Array]:
        """Draw θ from the prior and simulate x; returns ``(theta (n, dim), x (n, *obs_shape))``."""
        n = _check_count(n, "n")
        key_prior, key_sim = jax.random.split(key)
        theta = self.sample_prior(key_prior, n)
        return theta, self.run_simulator(key_sim, theta)

    def observation(self, i: int) -> Array:
        """Benchmark observation number ``i`` (1-based, as in sbibm).

        Raises:
            ValueError: if the task has no stored observations or ``i`` is out of range.
        """
        return jnp.asarray(self._row(self.observations, "observations", i))

    def true_parameters_of(self, i: int) -> Float[Array, " dim"]:
        """The parameters that generated observation ``i`` (1-based)."""
        return jnp.asarray(self._row(self.true_parameters, "true parameters", i))

    def _row(self, table: np.ndarray | None, what: str, i: int) -> np.ndarray:
        if table is None:
            raise ValueError(f"task {self.name!r} has no stored {what}")
        if not isinstance(i, int | np.integer) or not 1 <= i <= len(table):
            raise ValueError(f"i: expected an integer in 1..{len(table)}; got {i!r}")
        return table[int(i) - 1]


def _check_count(n: Any, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"{name}: expected a positive integer; got {n!r}")
    return int(n)


def units_of(task: Task) -> Sequence[u.UnitBase | None]:
    """Units of each parameter (``None`` where dimensionless or unknown)."""
    return task.parameter_units or (None,) * task.dim


def symmetry_block_size(name: object) -> int:
    """Number of parameters of one `Task.parameter_symmetry` block.

    Raises:
        ValueError: for a name other than ``"trivial"``, ``"sign"`` or ``"spin<s>"``.
    """
    if name in ("trivial", "sign"):
        return 1
    if isinstance(name, str) and re.fullmatch(r"spin[1-9]\d*", name):
        return 2
    raise ValueError(
        f"parameter_symmetry: expected block names 'trivial', 'sign' or 'spin<s>' (s >= 1); "
        f"got {name!r}"
    )
