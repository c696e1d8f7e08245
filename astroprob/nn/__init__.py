"""astroprob.nn."""
