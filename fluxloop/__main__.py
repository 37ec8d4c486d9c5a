"""``python -m fluxloop``: the same command line as the ``fluxloop`` console script."""

from fluxloop.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
