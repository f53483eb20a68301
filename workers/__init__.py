"""ARQ worker pools, the dispatcher, platform clients and the Redis rate limiter."""
