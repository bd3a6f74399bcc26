"""The HTTP API (FastAPI): admin routes under /api/v1, device routes behind mTLS."""
