"""Bodies every part of the API shares: a page of items, a problem."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")

# An id a client sends for a row: SQLite's integers are 64-bit, so a larger one is refused, not a 500.
RowId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class Items(BaseModel, Generic[T]):
    items: list[T]
    next: str | None = Field(None, description="cursor of the next page (pass as ?cursor=); null on the last page")


class Listing(BaseModel, Generic[T]):
    """A whole list, not paged."""

    items: list[T]


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str


def dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json")
