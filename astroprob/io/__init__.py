"""astroprob.io."""
