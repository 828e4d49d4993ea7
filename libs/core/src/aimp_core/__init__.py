"""aimp_core: what every aimp service shares.

Settings, JSON logging, Prometheus metrics, W3C trace context, the service app
factory, problem+json errors, the Eureka client, the Kafka event publisher,
event schemas and the SQL engine factory.
"""
