"""The provisioner's part of environments: a machine's environment resolved and built on this
host (``environment``), the builds it shares between machines and ``environments.build``
(``environment_builds``), and which images a Dockerfile may name (``image_policy``)."""
