"""astroprob: amortized, calibrated simulation-based inference for astronomy."""

from astroprob import diagnostics, flows, inference, tasks
from astroprob._version import __version__
from astroprob.inference import NPE, Posterior

__all__ = ["NPE", "Posterior", "__version__", "diagnostics", "flows", "inference", "tasks"]
