"""astroprob.tasks."""
