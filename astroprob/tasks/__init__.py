"""Benchmark tasks: priors, pure JAX simulators, and the sbibm observations.

``get(name)`` returns one of the sbibm benchmark tasks (Lueckmann et al. 2021,
https://arxiv.org/abs/2101.04653) with the published priors, simulators and
observations 1-10; ``reference_posterior_samples`` reads sbibm's reference posteriors.

Examples:
    >>> import astroprob.tasks as tasks
    >>> tasks.names()[:3]
    ('two_moons', 'slcp', 'gaussian_linear')
    >>> tasks.get("slcp").observation(1).shape
    (8,)
"""

from astroprob.tasks import bernoulli_glm, gaussian_linear, gaussian_mixture, slcp, two_moons
from astroprob.tasks._reference import reference_posterior_samples
from astroprob.tasks._registry import get, names
from astroprob.tasks._task import Simulator, Task
from astroprob.tasks.sersic import SersicGalaxy
from astroprob.tasks.supernova import SupernovaLightCurves

__all__ = [
    "SersicGalaxy",
    "Simulator",
    "SupernovaLightCurves",
    "Task",
    "bernoulli_glm",
    "gaussian_linear",
    "gaussian_mixture",
    "get",
    "names",
    "reference_posterior_samples",
    "slcp",
    "two_moons",
]
