"""The ``docker`` provider: a machine is a container on a Docker engine (DOCKER_HOST's, else
the local one), its home a volume.

Offers ``DockerProvider``, its machine image (``ImageBuilder`` and the paths inside it), its
warm pool, the helper container that copies volumes, and the names and labels its containers
and volumes carry on the engine.
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = [
    "BASE_REPO",
    "IMAGE_REPO",
    "LABEL_HOME_COPY",
    "LABEL_MACHINE",
    "LABEL_POOL",
    "LABEL_SNAPSHOT",
    "LABEL_STACK",
    "LAYER_REPO",
    "MACHINE_HOME",
    "POOL_PREFIX",
    "DockerPoolBackend",
    "DockerProvider",
    "Say",
    "container_name",
    "copy_record",
    "ensure_network",
    "helper_container",
    "home_volumes",
    "remove_home",
    "remove_volume",
    "snapshot_volume",
    "stop_stack",
]

if TYPE_CHECKING:
    from providers.docker.copy import (
        LABEL_HOME_COPY,
        LABEL_SNAPSHOT,
        LAYER_REPO,
        copy_record,
        snapshot_volume,
    )
    from providers.docker.home import home_volumes, remove_home, remove_volume
    from providers.docker.image import (
        BASE_REPO,
        IMAGE_REPO,
        MACHINE_HOME,
        Say,
    )
    from providers.docker.names import (
        LABEL_MACHINE,
        LABEL_POOL,
        LABEL_STACK,
        POOL_PREFIX,
        container_name,
    )
    from providers.docker.pool import DockerPoolBackend
    from providers.docker.provider import DockerProvider, ensure_network, stop_stack
    from providers.docker.runtime import helper_container
else:
    __getattr__ = lazy_front(
        __name__,
        {
            "copy": (
                "LABEL_HOME_COPY",
                "LABEL_SNAPSHOT",
                "LAYER_REPO",
                "copy_record",
                "snapshot_volume",
            ),
            "home": (
                "home_volumes",
                "remove_home",
                "remove_volume",
            ),
            "image": (
                "BASE_REPO",
                "IMAGE_REPO",
                "MACHINE_HOME",
                "Say",
            ),
            "names": (
                "LABEL_MACHINE",
                "LABEL_POOL",
                "LABEL_STACK",
                "POOL_PREFIX",
                "container_name",
            ),
            "pool": ("DockerPoolBackend",),
            "provider": (
                "DockerProvider",
                "ensure_network",
                "stop_stack",
            ),
            "runtime": ("helper_container",),
        },
    )
