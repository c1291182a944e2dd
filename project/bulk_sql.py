"""Multi-row writes in one statement whose rows travel as one JSON document.

The hot writes (a group commit of accepted comments, a sequencer batch of events and the comments
it publishes) write hundreds of rows per statement. Through the ORM's ``bulk_create`` and
``update(Case(When(...)))`` building and adapting a parameter per column per row cost more CPU
than PostgreSQL spent running the statement (``docs/BENCHMARKS.md``). Here the rows are encoded by
``json.dumps`` (C) into one parameter and unpacked by ``json_to_recordset``, with column names
and types taken from the model, so a new field needs no change here.

PostgreSQL only; callers keep the ORM for other databases (the embedded SQLite fallback).
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Field, Model


def supported() -> bool:
    """Whether the default database can take these statements."""
    return connection.vendor == "postgresql"


def _json_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


def _column(field: Field[Any, Any]) -> str:
    assert field.column is not None, f"{field} has no column"
    return field.column


def _record_type(fields: Sequence[Field[Any, Any]]) -> str:
    return ", ".join(f"{connection.ops.quote_name(_column(f))} {f.db_type(connection)}" for f in fields)


def _columns(fields: Sequence[Field[Any, Any]], prefix: str = "") -> str:
    return ", ".join(prefix + connection.ops.quote_name(_column(f)) for f in fields)


def rows_insert(objs: Sequence[Model], *, ignore_conflicts: bool = False) -> set[Any]:
    """INSERT ``objs`` (one model) in one statement.

    Fills defaults and ``auto_now`` values as ``bulk_create`` does; columns the database fills
    (an auto-increment primary key) are left to it and set on ``objs``. With ``ignore_conflicts`` rows that hit a
    unique constraint are skipped (``ON CONFLICT DO NOTHING``). Returns the primary keys of the
    rows actually inserted.
    """
    if not objs:
        return set()
    model = type(objs[0])
    fields = [f for f in model._meta.concrete_fields if f.column and not f.db_returning]
    document = json.dumps([{_column(f): _json_value(f.pre_save(obj, add=True)) for f in fields} for obj in objs])
    pk = model._meta.pk
    assert pk is not None
    sql = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({_columns(fields)})"
        f" SELECT {_columns(fields, 'v.')} FROM json_to_recordset(%s::json) AS v({_record_type(fields)})"
        f"{' ON CONFLICT DO NOTHING' if ignore_conflicts else ''}"
        f" RETURNING {connection.ops.quote_name(_column(pk))}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [document])
        keys = [pk.to_python(row[0]) for row in cursor.fetchall()]
    if pk.db_returning and not ignore_conflicts:
        # The database made the keys: RETURNING gives them in the order of the rows, which
        # bulk_create relies on too (not with skipped conflicts, where the two would not line up).
        for obj, key in zip(objs, keys, strict=True):
            obj.pk = key
    return set(keys)


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, Field), f"{model.__name__}.{name} is not a concrete field"
    return field


def rows_update(model: type[Model], *, key: str, rows: Iterable[dict[str, Any]], common: dict[str, Any]) -> int:
    """UPDATE rows of ``model`` matched by the field ``key``: each row's own values (``rows``, keyed
    by field name, all with the same fields) plus ``common`` values for all. Returns rows changed."""
    rows = list(rows)
    if not rows:
        return 0
    quote = connection.ops.quote_name
    own = [_field(model, name) for name in rows[0]]
    document = json.dumps([{_column(_field(model, n)): _json_value(v) for n, v in row.items()} for row in rows])
    key_column = quote(_column(_field(model, key)))
    assignments = [f"{quote(_column(f))} = v.{quote(_column(f))}" for f in own if f.name != key]
    params: list[Any] = []
    for name, value in common.items():
        assignments.append(f"{quote(_column(_field(model, name)))} = %s")
        params.append(value)
    sql = (
        f"UPDATE {quote(model._meta.db_table)} AS t SET {', '.join(assignments)}"
        f" FROM json_to_recordset(%s::json) AS v({_record_type(own)})"
        f" WHERE t.{key_column} = v.{key_column}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, document])
        return int(cursor.rowcount)
