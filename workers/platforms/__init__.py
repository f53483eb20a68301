"""Platform adapters: one module per marketplace, each implementing `PlatformAdapter`."""
