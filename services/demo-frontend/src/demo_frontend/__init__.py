"""A stand-in product frontend (RocketLit or InnerOrbit) that logs in through sso-gateway."""
