"""Starts our services as real processes for the tests, the benchmarks and `make run` (docs/testing.md).
A development tool: no service imports it, and it imports no service (it runs their commands)."""

from roster_harness.postgres import Database, fresh_database
from roster_harness.processes import (
    BIN,
    Processes,
    Service,
    StartError,
    clean_env,
    free_port,
    free_ports,
)
from roster_harness.stack import LoginStack, console_client, console_settings, serve_command, uvicorn_command

__all__ = [
    "BIN",
    "Database",
    "LoginStack",
    "Processes",
    "Service",
    "StartError",
    "clean_env",
    "console_client",
    "console_settings",
    "free_port",
    "free_ports",
    "fresh_database",
    "serve_command",
    "uvicorn_command",
]
