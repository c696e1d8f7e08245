"""astroprob.testing: public helpers for testing estimators and networks."""

from astroprob.testing.equivariance import assert_equivariant

__all__ = ["assert_equivariant"]
