"""MLflow, and nothing else imports it: the store, provenance, the registry, model I/O, the server."""
