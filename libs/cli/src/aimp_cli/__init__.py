"""aimp-cli."""
