"""Environments a machine runs: a repo's Dockerfile or devcontainer.json, read as untrusted
input, built once per content hash on the machine's Docker engine, and its lifecycle commands."""
