"""aimp-registry."""
