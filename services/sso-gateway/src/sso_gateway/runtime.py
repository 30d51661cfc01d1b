"""What the lifespan builds and the routes share: settings, store, keys, HTTP clients, clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request
from prometheus_client import Counter, Histogram

from roster_shared.client import RosterApiClient
from roster_shared.contracts import Product
from roster_shared.web import Metrics
from sso_gateway.keys import KeyRing
from sso_gateway.records import Records
from sso_gateway.security import Cookies
from sso_gateway.settings import OidcClient, ProductSettings, Settings
from sso_gateway.store import Clock, Store


@dataclass(frozen=True)
class RegisteredClient:
    product: Product
    config: OidcClient


class GatewayMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.logins = Counter(
            "sso_logins_total", "Clever logins by outcome", ["product", "outcome"], registry=metrics.registry
        )
        # time spent waiting for Clever and roster-api, so the gateway's own share can be computed
        self.upstream = Histogram(
            "sso_upstream_seconds", "Time spent in upstream calls", ["upstream"], registry=metrics.registry
        )


@dataclass
class Gateway:
    settings: Settings
    store: Store
    keys: KeyRing
    clever_http: httpx.AsyncClient
    roster: RosterApiClient
    metrics: GatewayMetrics
    clock: Clock = time.time
    cookies: Cookies = field(init=False)
    products: dict[Product, ProductSettings] = field(init=False)
    clients: dict[str, RegisteredClient] = field(init=False)
    records: Records = field(init=False)

    def __post_init__(self) -> None:
        self.records = Records(self.store)
        self.cookies = Cookies(development=self.settings.development)
        self.products = self.settings.products()
        self.clients = {
            c.client_id: RegisteredClient(product, c)
            for product, p in self.products.items()
            for c in p.clients
        }

    @property
    def issuer(self) -> str:
        return self.settings.issuer.rstrip("/")

    def url(self, path: str) -> str:
        return self.issuer + path

    def product(self, name: str) -> tuple[Product, ProductSettings] | None:
        try:
            product = Product(name)
        except ValueError:
            return None
        conf = self.products.get(product)
        return (product, conf) if conf else None

    def now(self) -> float:
        return self.clock()


def gateway(request: Request) -> Gateway:
    gw: Any = request.app.state.gateway
    assert isinstance(gw, Gateway)
    return gw


@dataclass(frozen=True)
class ProductContext:
    """The product a route's `{product_name}` names, with its settings."""

    product: Product
    conf: ProductSettings


class UnknownProduct(Exception):
    """The path names no configured product: the app answers with the "bad request" page."""


async def product_context(product_name: str, request: Request) -> ProductContext:
    # async: FastAPI runs a sync dependency in a worker thread
    found = gateway(request).product(product_name)
    if found is None:
        raise UnknownProduct(product_name[:40])
    return ProductContext(*found)


ProductDep = Annotated[ProductContext, Depends(product_context)]
