"""The names and labels a ``docker`` machine's containers and volumes carry on the engine."""

from __future__ import annotations

LABEL_MACHINE = "fleet.machine"
LABEL_INSTANCE = "fleet.instance"
#: Which stack (its data dir) a container belongs to: `fleet up` stops its own, no one else's.
LABEL_STACK = "fleet.stack"
#: A warm-pool container's slot (``providers/docker/pool.py``), and the provisioner whose pool
#: it is. A claim cannot relabel it: it renames it to ``fleet-<machineId>`` instead.
LABEL_POOL = "fleet.pool"
LABEL_POOL_OWNER = "fleet.pool.owner"
#: A machine of an environment's image (not the machine image): its container, and with it
#: what it wrote outside its home, is kept across stop and start.
LABEL_ENVIRONMENT = "fleet.environment"
#: On a machine's home volume: the host uid its machine runs as (providers/docker/users.py).
LABEL_UID = "fleet.uid"


#: An unclaimed pool container's name starts so (``fleet-pool-<slot>``).
POOL_PREFIX = "fleet-pool-"


def container_name(machine_id: str) -> str:
    return f"fleet-{machine_id}"


def volume_name(machine_id: str) -> str:
    return f"fleet-{machine_id}-home"
