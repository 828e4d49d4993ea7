"""aimp-inference."""
