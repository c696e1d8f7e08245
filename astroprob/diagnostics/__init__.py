"""Diagnostics on arrays of samples: is a posterior estimate right?

``c2st``: classifier two-sample test between two sets of samples (sbibm's metric).
"""

from astroprob.diagnostics.c2st import c2st

__all__ = ["c2st"]
