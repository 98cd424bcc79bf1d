"""Alembic migrations of the internal store."""
