"""Bodies every part of the API shares: a page of items, a problem."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

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



def _no_null_defaults(schema: dict[str, Any]) -> None:
    # A field left out of a change keeps its value; "default": null would say it is cleared.
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


class _Change(BaseModel):
    model_config = ConfigDict(json_schema_extra=_no_null_defaults)


def change_of(model: type[BaseModel], name: str, **fields: tuple[Any, FieldInfo]) -> type[BaseModel]:
    """A PATCH body named ``name`` for ``model``: every field optional with its own type and limits, so a field
    sent is validated as on create and one left out stays as it is (``model_dump(exclude_unset=True)``).

    A field that may not be null on create may not be null here either. ``fields``: fields to add or
    retype, as ``name=(annotation, Field(...))``.
    """
    optional = {f: (info.annotation, info) for f, info in model.model_fields.items()} | fields
    spec: dict[str, Any] = {f: (annotation, FieldInfo.merge_field_infos(info, default=None, default_factory=None))
                            for f, (annotation, info) in optional.items()}
    return create_model(name, __base__=(model, _Change), __doc__=f"Changes: only the fields sent, each "
                        "checked as on create; a field left out keeps its value.", **spec)
