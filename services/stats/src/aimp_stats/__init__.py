"""aimp-stats."""
