"""astroprob.nn: embedding networks for images and light curves.

Classic blocks (`MLP`, `ConvEmbedding`, `ResidualBlock`, the activations of
`astroprob.nn.activations`), group-equivariant CNNs for the rotation groups C_N
and dihedral groups D_N (`EquivariantCNN`, `EquivariantClassifier`, and their
layers in `astroprob.nn.equivariant`), and the light-curve encoder.
"""

from astroprob.nn import activations, groups
from astroprob.nn.cnn import ConvEmbedding, ResidualBlock
from astroprob.nn.equivariant import (
    EquivariantClassifier,
    EquivariantCNN,
    GroupConv,
    GroupLayerNorm,
    LiftingConv,
)
from astroprob.nn.groups import CyclicGroup, DihedralGroup, Group
from astroprob.nn.lightcurve import LightCurveEncoder
from astroprob.nn.mlp import MLP
from astroprob.nn.vae import ConvVAE, VAEEmbedding

__all__ = [
    "ConvVAE",
    "VAEEmbedding",
    "MLP",
    "ConvEmbedding",
    "CyclicGroup",
    "DihedralGroup",
    "EquivariantCNN",
    "EquivariantClassifier",
    "Group",
    "GroupConv",
    "GroupLayerNorm",
    "LiftingConv",
    "LightCurveEncoder",
    "ResidualBlock",
    "activations",
    "groups",
]
