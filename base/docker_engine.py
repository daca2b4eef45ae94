"""Where the Docker engine runs, as far as its address says."""

from __future__ import annotations

from collections.abc import Mapping


def engine_is_local(engine_url: str | None, environ: Mapping[str, str]) -> bool:
    """Whether the engine runs on this host (its socket): ``engine_url``, else DOCKER_HOST's."""
    url = engine_url or environ.get("DOCKER_HOST", "") or "unix://"
    return url.startswith("unix://")
