"""aimp-gateway."""
