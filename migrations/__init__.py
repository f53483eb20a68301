"""Alembic histories: `core` for public + product_attributes, `tenant` for every tenant schema."""
