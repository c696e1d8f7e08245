"""astroprob.flows."""
