"""``python -m audiobench.cli``: the same as ``audiobench``."""

from audiobench.cli import main

raise SystemExit(main())
