"""Posting one notice to a district's webhook, signed with the district's secret.

Headers: `X-Roster-Timestamp` (Unix seconds) and `X-Roster-Signature: sha256=<hex>`, the HMAC-SHA256 of
`<timestamp>.<body>` under the secret; `X-Roster-Delivery` names the notice and stays the same across
retries, so a receiver can drop a repeat. The README shows how to verify a delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

SIGNATURE_HEADER = "X-Roster-Signature"
TIMESTAMP_HEADER = "X-Roster-Timestamp"
DELIVERY_HEADER = "X-Roster-Delivery"


class PostFailed(Exception):
    """`code` is the HTTP status when the receiver answered; `permanent` when trying again cannot help."""

    def __init__(self, detail: str, *, code: int | None = None, permanent: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.permanent = permanent


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def signature(secret: str, timestamp: int, content: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + content, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def _permanent(status: int) -> bool:
    # the receiver says the request itself is wrong; 408 and 429 mean "later"
    return 400 <= status < 500 and status not in {408, 425, 429}


def post(
    *, url: str, secret: str, payload: dict[str, Any], delivery_id: str, timeout: float, client: httpx.Client
) -> int:
    """Returns the receiver's status (2xx); raises PostFailed otherwise. Redirects are not followed: a
    signed notice goes where the district said, nowhere else."""
    content = body(payload)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "roster-api-notices/1",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, content),
        DELIVERY_HEADER: delivery_id,
    }
    try:
        response = client.post(url, content=content, headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise PostFailed("timed out") from exc
    except httpx.HTTPError as exc:
        raise PostFailed(f"could not reach the receiver ({type(exc).__name__})") from exc
    if 200 <= response.status_code < 300:
        return response.status_code
    raise PostFailed(
        f"answered {response.status_code}",
        code=response.status_code,
        permanent=_permanent(response.status_code),
    )
