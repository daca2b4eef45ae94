"""fleetd's benchmarks (issue 7): `python -m bench` runs them all, `--quick` in under a minute.

Each prints its figures next to a baseline measured in the same run, as a ratio, because the
machines these run on are noisy. Never timed tests: scripts. See docs/benchmarks.md.
"""
