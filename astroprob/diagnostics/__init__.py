"""astroprob.diagnostics."""
