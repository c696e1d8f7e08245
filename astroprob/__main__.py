"""``python -m astroprob`` runs the command line."""

from astroprob.cli import main

raise SystemExit(main())
