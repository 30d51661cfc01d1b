"""A Clever simulator for development, the demo and tests: the endpoints and JSON shapes of Clever's API
(docs/design.md, "Logging in with Clever"), users and districts seeded from a roster CSV. Never part of a
production image."""
