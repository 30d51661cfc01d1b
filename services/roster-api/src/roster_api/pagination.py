"""Offset pagination with a stable order, a capped limit and the total; the date-time type of list
filters (`since`, `until`)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, BeforeValidator

T = TypeVar("T")
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class PageParams(BaseModel):
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"At most {MAX_LIMIT}")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(page_params)]


_ISO_8601 = re.compile(r"\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|z|[+-]\d{2}(:?\d{2})?)?")


def _iso_8601_only(value: object) -> object:
    # pydantic alone also reads a number ("0.5") as seconds since 1970: a filter typo, not a date
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_8601.fullmatch(value.strip()) is not None:
        return value
    raise ValueError("must be an ISO 8601 date or date-time, e.g. 2026-09-01T08:00:00Z")


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_8601_only)]
