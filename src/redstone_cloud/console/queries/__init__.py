"""Read functions behind the console's pages: plain values in, plain dataclasses out
(templates never see a query or a session)."""
