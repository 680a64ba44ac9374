"""eventlens's benchmarks: run each from the repository root as a module, e.g.
`uv run python -m benchmarks.bench_explore --help`. What they share is in harness.py (how they
measure and report) and data.py (the generated export and stores); see README.md."""
