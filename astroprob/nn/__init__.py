"""astroprob.nn."""

from astroprob.nn.cnn import ConvEmbedding
from astroprob.nn.lightcurve import LightCurveEncoder

__all__ = ["ConvEmbedding", "LightCurveEncoder"]
