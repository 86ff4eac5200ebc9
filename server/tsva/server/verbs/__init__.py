"""`tsva` verbs of the gateway: serve, stack."""
