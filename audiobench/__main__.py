from audiobench.cli import main

raise SystemExit(main())
