"""aimp-deploy-control."""
