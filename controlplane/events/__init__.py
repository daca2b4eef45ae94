"""The bus's consumers: a durable consumer and its room, coalescing, the ``@subscriber``
declarations, and output sent as batched lines."""
