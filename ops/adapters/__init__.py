"""Infrastructure adapters the gateway and the workers share: Redis- and key-backed services."""
