"""FluxLoop's benchmark harness: ``python -m benchmarks`` (see benchmarks/README.md and DESIGN §5)."""
