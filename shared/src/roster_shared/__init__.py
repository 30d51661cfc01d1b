"""Contracts shared by roster-api and sso-gateway. Imported, never run."""
