"""Typed async client for roster-api, used by sso-gateway (and by tests and tools)."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx
from pydantic import ValidationError

from roster_shared.contracts import (
    ConsoleIdentity,
    ConsoleResolveRequest,
    ResolveFailure,
    ResolveReason,
    ResolveRequest,
    ResolveResult,
)
from roster_shared.errors import ErrorEnvelope

DEFAULT_TIMEOUT = httpx.Timeout(connect=2.0, read=5.0, write=5.0, pool=2.0)


class RosterApiError(Exception):
    """roster-api answered, but not with what the contract promises (bad key, bad request, ...)."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"roster-api answered {status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code


class RosterApiUnavailable(Exception):
    """roster-api could not be reached, timed out, or failed (5xx). Retrying later may work."""


class RosterApiClient:
    """`async with RosterApiClient(base_url, api_key) as client: await client.resolve(req)`.

    Timeouts are explicit and redirects are never followed; the key travels in the Authorization header only.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "roster-shared-client"},
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:  # connect errors, timeouts, protocol errors
            raise RosterApiUnavailable(f"roster-api unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise RosterApiUnavailable(f"roster-api failed with {response.status_code}")
        return response

    async def resolve(
        self, request: ResolveRequest, *, request_id: str | None = None
    ) -> ResolveResult | ResolveFailure:
        headers = {"X-Request-ID": request_id} if request_id else {}
        response = await self._request(
            "POST", "/v1/resolve", json=request.model_dump(mode="json", exclude_none=True), headers=headers
        )
        if response.status_code == 200:
            return ResolveResult.model_validate_json(response.content)
        return _failure(response)

    async def console_resolve(
        self, request: ConsoleResolveRequest, *, request_id: str | None = None
    ) -> ConsoleIdentity | ResolveFailure:
        """The district console's identity of a Clever user, or why not (same 422 shape as resolve)."""
        headers = {"X-Request-ID": request_id} if request_id else {}
        response = await self._request(
            "POST", "/v1/console/resolve", json=request.model_dump(mode="json"), headers=headers
        )
        if response.status_code == 200:
            return ConsoleIdentity.model_validate_json(response.content)
        return _failure(response)

    async def ready(self) -> bool:
        try:
            response = await self._request("GET", "/readyz")
        except RosterApiUnavailable:
            return False
        return response.status_code == 200


def _failure(response: httpx.Response) -> ResolveFailure:
    """A 422 with a resolve reason is a refusal; anything else breaks the contract (RosterApiError)."""
    error = _parse_error(response)
    if response.status_code == 422 and error is not None:
        detail = error.error.details[0] if error.error.details else {}
        reason = detail.get("reason")
        if reason in {r.value for r in ResolveReason}:
            return ResolveFailure(
                reason=ResolveReason(reason),
                reference=str(detail.get("reference", "")),
                message=error.error.message,
            )
    code = error.error.code if error else "UNKNOWN"
    message = error.error.message if error else response.text[:200]
    raise RosterApiError(response.status_code, str(code), message)


def _parse_error(response: httpx.Response) -> ErrorEnvelope | None:
    try:
        return ErrorEnvelope.model_validate_json(response.content)
    except ValidationError:
        return None
