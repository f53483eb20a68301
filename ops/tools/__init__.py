"""Applications beside the platform: the marketplace sandbox and the reference plugin client."""
