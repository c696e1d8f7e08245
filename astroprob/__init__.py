"""astroprob: amortized, calibrated simulation-based inference for astronomy."""

from astroprob import diagnostics, flows, inference, io, nn, report, tasks, testing
from astroprob._version import __version__
from astroprob.inference import (
    NPE,
    BayesianClassifier,
    BayesianRegressor,
    ModelClassifier,
    Posterior,
)
from astroprob.report import calibrate

__all__ = [
    "NPE",
    "BayesianClassifier",
    "BayesianRegressor",
    "ModelClassifier",
    "Posterior",
    "__version__",
    "calibrate",
    "diagnostics",
    "flows",
    "inference",
    "io",
    "nn",
    "report",
    "tasks",
    "testing",
]
