"""astroprob.inference."""
