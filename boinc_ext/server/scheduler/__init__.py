"""The scheduler RPC: request parsing, authentication, reports, sending work, the reply, steering; handler.py ties them."""
