"""Plain, slotted rows for a batch's in-memory state: one class per runtime table, with its columns.

A batch reads thousands of rows and changes hundreds; ORM instances (attribute instrumentation,
identity map, unit of work) cost more than the decisions. These records carry the same attribute
names as the mapped classes, so code written against ``DebtorRow`` reads a ``DebtorRecord`` alike,
and :mod:`.repository` writes them back with Core statements. For the type checker each record
*is* its mapped class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.orchestrator.runtime.models import (
    AccountRow,
    ContactRequestRow,
    DebtorRow,
    DeferredContactRow,
    DispatchRow,
    SuppressionRow,
)
from shared.db import Base


def _record_class(model: type[Base]) -> type[Any]:
    columns = tuple(c.key for c in model.__table__.columns)
    # keyword-only, every column defaulting to None: a generated __init__ is as fast as a hand-written one
    source = (f"def __init__(self, *, {', '.join(f'{c}=None' for c in columns)}):\n"
              + "".join(f"    self.{c} = {c}\n" for c in columns))
    # from a row of the table's columns in table order (what repository._select reads): no mapping built
    source += ("def from_row(row):\n    self = new(cls)\n"
               f"    ({', '.join(f'self.{c}' for c in columns)},) = row\n    return self\n")
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102 - code built from our own column names only

    def __repr__(self: Any) -> str:
        return f"{type(self).__name__}(id={getattr(self, 'id', None)!r})"

    name = model.__name__.removesuffix("Row") + "Record"
    cls = type(name, (), {"__slots__": columns, "__init__": namespace["__init__"], "__repr__": __repr__,
                          "model": model, "columns": columns})
    namespace["new"], namespace["cls"] = object.__new__, cls
    cls.from_row = staticmethod(namespace["from_row"])  # type: ignore[attr-defined]
    return cls


if TYPE_CHECKING:
    DebtorRecord = DebtorRow
    AccountRecord = AccountRow
    RequestRecord = ContactRequestRow
    DispatchRecord = DispatchRow
    DeferralRecord = DeferredContactRow
    SuppressionRecord = SuppressionRow
else:
    DebtorRecord = _record_class(DebtorRow)
    AccountRecord = _record_class(AccountRow)
    RequestRecord = _record_class(ContactRequestRow)
    DispatchRecord = _record_class(DispatchRow)
    DeferralRecord = _record_class(DeferredContactRow)
    SuppressionRecord = _record_class(SuppressionRow)

#: The record class of each mapped class.
RECORDS: dict[type[Base], type[Any]] = {
    DebtorRow: DebtorRecord, AccountRow: AccountRecord, ContactRequestRow: RequestRecord,
    DispatchRow: DispatchRecord, DeferredContactRow: DeferralRecord, SuppressionRow: SuppressionRecord,
}
