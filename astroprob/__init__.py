"""astroprob: amortized, calibrated simulation-based inference for astronomy."""

from astroprob import diagnostics, flows, inference, io, nn, report, tasks
from astroprob._version import __version__
from astroprob.inference import NPE, Posterior
from astroprob.report import calibrate

__all__ = [
    "NPE",
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
]
