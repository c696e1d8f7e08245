"""Amortized inference: neural posterior estimation, its training loop, the `Posterior`."""

from astroprob.inference._loop import TrainingConfig, TrainingHistory
from astroprob.inference.bnn import BayesianClassifier, BayesianRegressor
from astroprob.inference.classifier import ModelClassifier, model_averaged_samples
from astroprob.inference.npe import NPE
from astroprob.inference.posterior import Posterior

__all__ = [
    "NPE",
    "BayesianClassifier",
    "BayesianRegressor",
    "ModelClassifier",
    "Posterior",
    "TrainingConfig",
    "TrainingHistory",
    "model_averaged_samples",
]
