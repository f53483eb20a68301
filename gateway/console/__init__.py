"""The operator console: cross-tenant figures, the `/api/ops` routes and the `/ops` page."""
