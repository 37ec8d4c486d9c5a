"""The FluxLoop version: the one place it is written (the build reads it too, see pyproject.toml)."""

__version__ = "0.2.0"
