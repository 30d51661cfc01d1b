"""sso-gateway: "Log in with Clever" for RocketLit and InnerOrbit, and an OpenID Connect provider to
their frontends. Never touches the roster database; asks roster-api `POST /v1/resolve`."""
