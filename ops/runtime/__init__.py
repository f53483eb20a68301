"""What starts processes: the top floor, which may import every other one and which nothing imports.

`cli` (the `stoflow` command), `platform` (`stoflow up`: migrate, seed, supervise), `supervisor`, `embedded`
and `service_urls` (PostgreSQL and Redis when no URL is set), `seed`, `demo`, `operators`, `secret_rotation`.
This is where the floors below are wired together, e.g. the gateway gets its `TenantSchemaMigrator` here.
"""
