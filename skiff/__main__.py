"""``python -m skiff``: the same entry point as the ``skiff`` script."""

from skiff.cli.main import main

raise SystemExit(main())
