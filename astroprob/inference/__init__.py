"""Amortized inference: neural posterior estimation, its training loop, the `Posterior`."""

from astroprob.inference._loop import TrainingConfig, TrainingHistory
from astroprob.inference.npe import NPE
from astroprob.inference.posterior import Posterior

__all__ = ["NPE", "Posterior", "TrainingConfig", "TrainingHistory"]
