"""astroprob: amortized, calibrated simulation-based inference for astronomy."""

from astroprob._version import __version__

__all__ = ["__version__"]
