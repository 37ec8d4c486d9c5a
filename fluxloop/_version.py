"""The FluxLoop version: defined here once; pyproject.toml reads it (``[tool.setuptools.dynamic]``).

A literal rather than ``importlib.metadata.version()``: that lookup alone costs about a third of
``import opentelemetry.sdk.trace`` and runs on every ``import fluxloop``.
"""

__version__ = "0.2.0"
