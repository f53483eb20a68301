"""PostgreSQL: models, engine and sessions, tenant scoping and repositories."""
