"""The NATS auth callout: machines connect to NATS as themselves (user ``<machineId>``, password
``<machineToken>``); the server asks this service, which checks the token against Redis and
answers with a user JWT that confines the machine to its own subjects."""
