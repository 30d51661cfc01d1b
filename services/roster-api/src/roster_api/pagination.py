"""Offset pagination with a stable order, a capped limit, the total and whether more follow; the
date-time type of list filters (`since`, `until`)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, BeforeValidator, Field, computed_field

T = TypeVar("T")
MAX_LIMIT = 500
# how far a list whose matches may be a whole large district (a name search) counts them
TOTAL_CAP = 1_000
HAS_MORE = "More items follow this page: ask again with `offset` + `limit`"


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="Items matching the filters, on every page")
    limit: int
    offset: int

    @computed_field(description=HAS_MORE)  # type: ignore[prop-decorator]
    @property
    def has_more(self) -> bool:
        return self.offset + len(self.items) < self.total


class CappedPage(BaseModel, Generic[T]):
    """A page of a list whose matches are counted up to TOTAL_CAP only: counting every match of a
    short name prefix reads a large district's whole roster."""

    items: list[T]
    total: int | None = Field(
        description=f"Items matching the filters, on every page; null when a name search (`q`) matches "
        f"more than {TOTAL_CAP:,}: page on while `has_more`"
    )
    limit: int
    offset: int
    has_more: bool = Field(description=HAS_MORE)


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
