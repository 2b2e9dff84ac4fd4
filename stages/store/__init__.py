"""The artifact store: atomic writes, leases and their heartbeat, tensor files, artifacts keyed by
content (:mod:`stages.store.artifacts`), the cache layout (:mod:`stages.store.layout`) and run status."""
