"""aimp-registry-sidecar."""
