"""aimp-registry: a Eureka-compatible service registry.

Pure layers: ``model``, ``store`` (clock injected, change listeners),
``preservation``, ``peers``, ``records``, ``stream``. Adapters: ``persistence``
(SQL), ``replication`` (HTTP to peers), ``eviction`` (the sweeper task). Eureka's
shapes: ``documents``, ``xmlcodec``, ``views``, ``wire``. Routes: ``api``
(writes), ``read_api``, ``stream_api``. ``app`` wires everything.
"""
