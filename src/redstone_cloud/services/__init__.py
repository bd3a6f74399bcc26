"""Business logic on a SQLAlchemy session, shared by the HTTP API and the CLI.

Services raise :mod:`redstone_cloud.errors` and never know about HTTP; every
state change an operator causes is written to the audit trail in the same
transaction as the change itself.
"""
