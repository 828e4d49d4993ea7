"""aimp-throttle: the throttle rules (policies, plans, assignments), their admin API,
their publication to every gateway, and ``POST /v1/check`` for other callers."""
