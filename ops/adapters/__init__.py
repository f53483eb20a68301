"""Infrastructure adapters the gateway and the workers share.

`rate_limit` (the sliding-window limiter: its Lua scripts and the reads of a window), `metrics_store`
(per-minute job counters in Redis), `heartbeats` (worker pools' liveness), `secrets_box` (marketplace tokens
sealed at rest) and `media_urls` (signed image URLs). Each is built from the settings and a client the caller
owns; they import `ops.config` and `domain`, never `persistence`, the gateway or the workers.
"""
