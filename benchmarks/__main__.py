"""Entry point: ``python -m benchmarks [--smoke] [--peers] [--phases ...]``."""

from benchmarks.run import main

raise SystemExit(main())
