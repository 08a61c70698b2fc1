"""``python -m xhmm``: the command line (see :mod:`xhmm.cli`)."""

from .cli import main

raise SystemExit(main())
