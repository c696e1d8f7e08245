"""The sbibm 1.1.0 task definitions, written out independently of astroprob for the tests.

Every constant here is read off ``sbibm/tasks/<task>/task.py`` (Lueckmann et al. 2021,
https://arxiv.org/abs/2101.04653); the tests compare astroprob against these numbers,
never against astroprob's own outputs.
"""

import math
from pathlib import Path

import numpy as np

NAMES = (
    "two_moons",
    "slcp",
    "gaussian_linear",
    "gaussian_linear_uniform",
    "gaussian_mixture",
    "bernoulli_glm",
)
DIM = {
    "two_moons": 2,
    "slcp": 5,
    "gaussian_linear": 10,
    "gaussian_linear_uniform": 10,
    "gaussian_mixture": 2,
    "bernoulli_glm": 10,
}
OBS_DIM = {
    "two_moons": 2,
    "slcp": 8,
    "gaussian_linear": 10,
    "gaussian_linear_uniform": 10,
    "gaussian_mixture": 2,
    "bernoulli_glm": 10,
}
WITH_LIKELIHOOD = ("slcp", "gaussian_linear", "gaussian_linear_uniform", "gaussian_mixture")
# Uniform priors: half-width of the box [-b, b]^dim.
UNIFORM_BOUND = {
    "two_moons": 1.0,
    "slcp": 3.0,
    "gaussian_linear_uniform": 1.0,
    "gaussian_mixture": 10.0,
}

# gaussian_linear(_uniform): sbibm passes precision_matrix = inverse(0.1 * I), so 0.1 is a
# variance for both the prior and the simulator noise.
GL_PRIOR_COV = 0.1 * np.eye(10)
GL_NOISE_COV = 0.1 * np.eye(10)

# gaussian_mixture: 0.5 N(theta, 1^2 I) + 0.5 N(theta, 0.1^2 I), one component per draw.
GM_WEIGHTS = (0.5, 0.5)
GM_SCALES = (1.0, 0.1)

# two_moons
TM_A_RANGE = (-math.pi / 2, math.pi / 2)
TM_R_LOC, TM_R_SCALE, TM_OFFSET = 0.1, 0.01, 0.25

# slcp
SLCP_EPS = 1e-6


def bernoulli_glm_precision() -> np.ndarray:
    m = 9
    d = np.diag(np.ones(m)) - np.diag(np.ones(m - 1), -1)
    f = d @ d + np.diag(np.arange(m) / m) ** 0.5
    b = np.zeros((m + 1, m + 1))
    b[0, 0] = 0.5
    b[1:, 1:] = f.T @ f
    return b


def prior_cov(name: str) -> np.ndarray:
    if name in UNIFORM_BOUND:
        return UNIFORM_BOUND[name] ** 2 / 3 * np.eye(DIM[name])
    if name == "gaussian_linear":
        return GL_PRIOR_COV
    return np.linalg.inv(bernoulli_glm_precision())


def bernoulli_glm_design_matrix(stimulus: np.ndarray) -> np.ndarray:
    """sbibm ``_setup``: column 0 is ones, column 1 + j is the stimulus delayed by j bins."""
    t = len(stimulus)
    x = np.zeros((t, 9))
    for j in range(9):
        x[j:, j] = stimulus[: t - j]
    return np.concatenate([np.ones((t, 1)), x], axis=1)


def bernoulli_glm_summary(spikes: np.ndarray, stimulus: np.ndarray) -> np.ndarray:
    """sbibm: [sum(y), conv1d(y, I, padding=8)[-9:]] with torch's cross-correlation."""
    padded = np.concatenate([np.zeros(8), spikes, np.zeros(8)])
    k = len(stimulus)
    corr = np.array([padded[s : s + k] @ stimulus for s in range(len(padded) - k + 1)])
    return np.concatenate([[spikes.sum()], corr[-9:]])


def slcp_mean_cov(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    theta = np.asarray(theta, dtype=np.float64)
    s1, s2, rho = theta[2] ** 2, theta[3] ** 2, np.tanh(theta[4])
    cov = np.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]]) + SLCP_EPS * np.eye(2)
    return theta[:2], cov


def two_moons_invert(theta: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undo the θ-dependent shift; returns (u, v) = (r cos a, r sin a) for x of shape (..., 2)."""
    theta = np.asarray(theta, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    c = s = math.sqrt(0.5)
    # sbibm: ang = -pi/4; z0 = cos(ang) t0 - sin(ang) t1; z1 = sin(ang) t0 + cos(ang) t1
    z0 = c * theta[..., 0] + s * theta[..., 1]
    z1 = -s * theta[..., 0] + c * theta[..., 1]
    u = x[..., 0] + np.abs(z0) - TM_OFFSET
    v = x[..., 1] - z1
    return u, v


def shared_reference_root() -> Path | None:
    """The shared sbibm data next to the repository, if this checkout has it."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data" / "sbibm_reference_posteriors"
        if (parent / "pyproject.toml").is_file():
            return candidate if candidate.is_dir() else None
    return None


# One sample size for every large simulation in the tests, so that each task's jitted
# sampler and simulator compile once per session.
N_SIM = 20_000


def tile(a, n: int = N_SIM):
    """Repeat one vector ``n`` times along a new leading axis (one compiled shape for all)."""
    import jax.numpy as jnp

    a = jnp.asarray(a, jnp.float32)
    return jnp.broadcast_to(a, (n, *a.shape))


_LOGLIK = {}


def loglik(task):
    """A jitted ``(theta (n, dim), x (n, obs)) -> log p(x | theta) (n,)`` for one task."""
    import jax

    if task.name not in _LOGLIK:
        _LOGLIK[task.name] = jax.jit(lambda theta, x: task.likelihood(theta).log_prob(x))
    return _LOGLIK[task.name]
