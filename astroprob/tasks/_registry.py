"""Look up the benchmark tasks by name; each is built once and then reused."""

from __future__ import annotations

import functools
from collections.abc import Callable

from astroprob.tasks import bernoulli_glm, gaussian_linear, gaussian_mixture, slcp, two_moons
from astroprob.tasks._task import Task

_FACTORIES: dict[str, Callable[[], Task]] = {
    "two_moons": two_moons.make_task,
    "slcp": slcp.make_task,
    "gaussian_linear": gaussian_linear.make_task,
    "gaussian_linear_uniform": gaussian_linear.make_uniform_task,
    "gaussian_mixture": gaussian_mixture.make_task,
    "bernoulli_glm": bernoulli_glm.make_task,
}


def names() -> tuple[str, ...]:
    """Names of the built-in benchmark tasks, e.g. ``"two_moons"``."""
    return tuple(_FACTORIES)


def check_name(name: object) -> str:
    """Return ``name`` if it names a built-in task.

    Raises:
        ValueError: if it does not; the message lists the known names.
    """
    if not isinstance(name, str) or name not in _FACTORIES:
        raise ValueError(f"name: expected one of {', '.join(names())}; got {name!r}")
    return name


@functools.cache
def _build(name: str) -> Task:
    return _FACTORIES[name]()


def get(name: str) -> Task:
    """The built-in task called ``name``.

    The same instance is returned on every call, so its compiled simulator is reused.

    Args:
        name: one of `names`, e.g. ``"two_moons"``.

    Returns:
        The `Task`, with its sbibm observations 1-10.

    Raises:
        ValueError: if ``name`` is not a known task; the message lists the known names.

    Examples:
        >>> import jax
        >>> task = get("two_moons")
        >>> theta, x = task.simulate(jax.random.key(0), 4)
        >>> theta.shape, x.shape
        ((4, 2), (4, 2))
    """
    return _build(check_name(name))
