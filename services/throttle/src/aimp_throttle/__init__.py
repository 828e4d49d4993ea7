"""aimp-throttle."""
