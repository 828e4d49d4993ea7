"""aimp-registry: a Eureka-compatible service registry.

Layers: ``model`` and ``store`` hold the pure registry (clock injected),
``documents`` and ``xmlcodec`` the Eureka JSON/XML shapes, ``api`` the HTTP
routes, ``eviction`` the lease sweeper, ``app`` the wiring.
"""
