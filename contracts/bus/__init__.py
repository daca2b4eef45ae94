"""The bus: events (``events``), their subjects (``subjects``), the durable consumers' names
(``consumers``) and the AsyncAPI document made of them (``asyncapi``)."""
