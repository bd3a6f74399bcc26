"""Alembic migration environment and scripts (a package so wheels ship them)."""
