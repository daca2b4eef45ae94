"""The provisioner's part of a machine's network: its egress policy applied on this host
(``enforcer``), the refusals its resolver reports as events (``events``), the docker networks
its machines live on (``docker_networks``), and the egress proxy that adds an instance's
secrets to its machines' requests (``secrets_proxy``, with its ``secrets_cache``)."""
