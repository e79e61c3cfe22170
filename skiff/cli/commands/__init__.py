"""One module per top-level command; each exposes ``register(parser)``."""
