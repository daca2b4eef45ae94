"""fleetd's benchmarks: `python -m bench` runs them all, `--quick` the fast ones in about a minute.

Each prints its figures next to a baseline measured in the same run, as a ratio, because the
machines these run on are noisy. Never timed tests: scripts. See docs/benchmarks.md.
"""
