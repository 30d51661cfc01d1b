"""A Clever simulator for development, the demo and tests: the endpoints and JSON shapes of
reference/clever.md, users and districts seeded from a roster CSV. Never part of a production image."""
