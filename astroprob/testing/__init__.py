"""astroprob.testing."""
