"""Statements built once: the few writes and reads every agent step makes, without the
ORM building their SQL anew each time.

The ORM spends about 0.3 ms of CPU building a one-row ``UPDATE`` that SQLite runs in
30 us, and every step makes a dozen of them; the agents worker runs hundreds of steps a
minute on one interpreter. These helpers build each statement's text once per shape
(model, columns, tests) from the model's metadata, and prepare every value with its
field (``get_db_prep_save`` / ``get_db_prep_value``), exactly as the ORM would. Errors
come out of Django's cursor wrapper as the ORM's do (``DatabaseError``). Anything
beyond plain equality, ``IN`` and ``<>`` stays with the ORM.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from django.db import connection, models
from django.db.models import ForeignKey

_SQL: dict[tuple[Any, ...], str] = {}
M = TypeVar("M", bound=models.Model)


def field_of(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    """Return the concrete field ``name`` of ``model`` ("pk" is its primary key)."""
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    if not isinstance(field, models.Field):
        raise TypeError(f"{model.__name__}.{name} is not a column")
    return field


def _column(model: type[models.Model], name: str) -> str:
    return connection.ops.quote_name(field_of(model, name).column)


def _tests(
    model: type[models.Model], equal: dict[str, Any], differ: dict[str, Any]
) -> tuple[list[str], list[Any]]:
    """Return the SQL tests and their parameters: ``=`` (``IN`` for a collection), ``<>``."""
    tests: list[str] = []
    params: list[Any] = []
    for name, value in equal.items():
        field = field_of(model, name)
        if isinstance(value, Collection) and not isinstance(value, str):
            values = sorted(value)
            tests.append(f"{_column(model, name)} IN ({', '.join(['%s'] * len(values))})")
            params += [field.get_db_prep_value(v, connection) for v in values]
        else:
            tests.append(f"{_column(model, name)} = %s")
            params.append(field.get_db_prep_value(value, connection))
    for name, value in differ.items():
        tests.append(f"NOT ({_column(model, name)} = %s)")
        params.append(field_of(model, name).get_db_prep_value(value, connection))
    return tests, params


def _shape(equal: dict[str, Any], differ: dict[str, Any]) -> tuple[Any, ...]:
    sizes = tuple(
        len(v) if isinstance(v, Collection) and not isinstance(v, str) else -1
        for v in equal.values()
    )
    return (connection.vendor, tuple(equal), sizes, tuple(differ))


def rows_update(
    model: type[models.Model],
    values: dict[str, Any],
    *,
    equal: dict[str, Any],
    differ: dict[str, Any] | None = None,
    extra: str = "",
    extra_params: Sequence[Any] = (),
) -> int:
    """``UPDATE <model> SET <values> WHERE <equal> AND <differ> [AND <extra>]``; return
    how many rows changed.

    ``equal``: field -> value (a collection: ``IN``; an empty one matches nothing);
    ``differ``: field -> value it must not have; ``extra``: one more SQL test, with
    ``{table}`` standing for the model's quoted table name, and its parameters.
    None values in ``equal`` would need ``IS NULL``: use the ORM for those.
    """
    differ = differ or {}
    if any(isinstance(v, Collection) and not isinstance(v, str) and not v for v in equal.values()):
        return 0  # ``IN ()`` matches nothing (and is not SQL on PostgreSQL).
    if any(v is None for v in (*equal.values(), *differ.values())):
        raise ValueError("rows_update tests equality only; a None needs IS NULL")
    key = ("update", model, tuple(values), _shape(equal, differ), extra)
    tests, params = _tests(model, equal, differ)
    sql = _SQL.get(key)
    if sql is None:
        table = connection.ops.quote_name(model._meta.db_table)
        sets = ", ".join(f"{_column(model, name)} = %s" for name in values)
        where = " AND ".join(tests + ([extra.format(table=table)] if extra else []))
        sql = _SQL[key] = f"UPDATE {table} SET {sets} WHERE {where}"
    prepared = [field_of(model, k).get_db_prep_save(v, connection) for k, v in values.items()]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*prepared, *params, *extra_params])
        return int(cursor.rowcount)


def row_values(
    model: type[models.Model], names: Sequence[str], pk: Any, *, lock: bool = False
) -> tuple[Any, ...] | None:
    """Return the raw column values ``names`` of the row ``pk`` (None if there is none).

    Raw: as the database returns them (SQLite gives 0/1 for a boolean); the caller
    converts what it needs. ``lock``: ``FOR UPDATE`` where the database has it.
    """
    rows = rows_values(model, names, equal={"pk": pk}, lock=lock)
    return rows[0] if rows else None


def rows_values(
    model: type[models.Model],
    names: Sequence[str],
    *,
    equal: dict[str, Any],
    order: Sequence[str] = (),
    lock: bool = False,
) -> list[tuple[Any, ...]]:
    """Return the raw column values ``names`` of the rows passing ``equal``, in ``order``."""
    if any(isinstance(v, Collection) and not isinstance(v, str) and not v for v in equal.values()):
        return []
    key = ("select", model, tuple(names), _shape(equal, {}), tuple(order), lock)
    tests, params = _tests(model, equal, {})
    sql = _SQL.get(key)
    if sql is None:
        table = connection.ops.quote_name(model._meta.db_table)
        columns = ", ".join(_column(model, name) for name in names)
        sql = f"SELECT {columns} FROM {table} WHERE {' AND '.join(tests)}"
        if order:
            sql += " ORDER BY " + ", ".join(_column(model, name) for name in order)
        if lock and connection.features.has_select_for_update:
            sql += " FOR UPDATE"
        _SQL[key] = sql
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]


def rows_exist(model: type[models.Model], *, equal: dict[str, Any], extra: str = "") -> bool:
    """Return whether a row passes ``equal`` (and ``extra``, as in ``rows_update``)."""
    key = ("exist", model, _shape(equal, {}), extra)
    tests, params = _tests(model, equal, {})
    sql = _SQL.get(key)
    if sql is None:
        table = connection.ops.quote_name(model._meta.db_table)
        where = " AND ".join(tests + ([extra.format(table=table)] if extra else []))
        sql = _SQL[key] = f"SELECT 1 FROM {table} WHERE {where} LIMIT 1"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


_INSERT_FIELDS: dict[tuple[Any, ...], tuple[list[Any], str]] = {}


def rows_insert(objs: Sequence[M]) -> list[M]:
    """``INSERT`` unsaved instances of one model in one statement, as ``bulk_create``
    would (fields' ``pre_save`` such as ``auto_now_add``, values prepared by their
    fields); an automatic primary key is read back (``RETURNING``) and set on each.

    Values that are expressions, instances of an automatic-key model that already have
    a key, or a database that cannot return inserted rows go through ``bulk_create``.
    """
    if not objs:
        return []
    model = type(objs[0])
    opts = model._meta
    auto = bool(getattr(opts.pk, "db_returning", False))
    if (
        (auto and any(obj.pk is not None for obj in objs))
        or (auto and not connection.features.can_return_rows_from_bulk_insert)
        or any(type(obj) is not model for obj in objs)
    ):
        return list(model._default_manager.bulk_create(objs))
    key = ("insert", model, connection.vendor)
    known = _INSERT_FIELDS.get(key)
    if known is None:
        fields = [f for f in opts.concrete_fields if not (auto and f is opts.pk)]
        fields = [f for f in fields if not getattr(f, "generated", False)]
        known = _INSERT_FIELDS[key] = (fields, ", ".join(_column(model, f.name) for f in fields))
    fields, columns = known
    rows = []
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="bulk_create")  # type: ignore[attr-defined]
        values = [f.pre_save(obj, True) for f in fields]
        if any(hasattr(v, "resolve_expression") for v in values):
            return list(model._default_manager.bulk_create(objs))
        rows.append(
            [f.get_db_prep_save(v, connection) for f, v in zip(fields, values, strict=True)]
        )
    batch = max(1, connection.ops.bulk_batch_size(fields, objs))
    table = connection.ops.quote_name(opts.db_table)
    returning = f" RETURNING {_column(model, 'pk')}" if auto else ""
    one = f"({', '.join(['%s'] * len(fields))})"
    with connection.cursor() as cursor:
        for first in range(0, len(objs), batch):
            part = rows[first : first + batch]
            sql_key = ("insert-sql", model, connection.vendor, len(part))
            sql = _SQL.get(sql_key)
            if sql is None:
                sql = _SQL[sql_key] = (
                    f"INSERT INTO {table} ({columns}) VALUES {', '.join([one] * len(part))}"
                    + returning
                )
            cursor.execute(sql, [v for row in part for v in row])
            if auto:
                for obj, (pk,) in zip(objs[first : first + batch], cursor.fetchall(), strict=True):
                    obj.pk = pk
    for obj in objs:
        obj._state.adding, obj._state.db = False, connection.alias
    return list(objs)


class _Joined:
    """A ``SELECT`` of a row and the rows its foreign keys name (``select_related``),
    built once: the SQL, and per model its fields and each column's converters."""

    def __init__(
        self,
        model: type[models.Model],
        paths: Sequence[str],
        lock: bool,
        *,
        by: str = "pk",
        order: Sequence[str] = (),
    ) -> None:
        quote = connection.ops.quote_name
        self.parts: list[tuple[str, type[models.Model], list[Any], list[Any]]] = []
        self.links: list[tuple[str, str, ForeignKey[Any, Any]]] = []  # parent, child, key
        joins: list[str] = []
        aliases = {"": "t0"}
        models_at: dict[str, type[models.Model]] = {"": model}
        for path in ["", *paths]:
            if path:
                parent_path, _, name = path.rpartition("__")
                fk = models_at[parent_path]._meta.get_field(name)
                if not isinstance(fk, ForeignKey):
                    raise TypeError(f"{path} is not a foreign key")
                target = fk.related_model
                if not isinstance(target, type) or not issubclass(target, models.Model):
                    raise TypeError(f"{path} names no model")
                alias = aliases[path] = f"t{len(aliases)}"
                models_at[path] = target
                self.links.append((parent_path, path, fk))
                joins.append(
                    f"{'LEFT OUTER JOIN' if fk.null else 'INNER JOIN'}"
                    f" {quote(target._meta.db_table)} {alias} ON {aliases[parent_path]}."
                    f"{quote(fk.column)} = {alias}.{quote(field_of(target, 'pk').column)}"
                )
            fields = list(models_at[path]._meta.concrete_fields)
            converters = []
            for field in fields:
                col = field.get_col(aliases[path])
                found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                converters.append((col, found))
            self.parts.append((path, models_at[path], fields, converters))
        columns = ", ".join(
            f"{aliases[path]}.{quote(f.column)}"
            for path, _, fields, _ in self.parts
            for f in fields
        )
        self.sql = (
            f"SELECT {columns} FROM {quote(model._meta.db_table)} t0 {' '.join(joins)}"
            f" WHERE t0.{quote(field_of(model, by).column)} = %s"
        )
        if order:
            self.sql += " ORDER BY " + ", ".join(
                f"t0.{quote(field_of(model, o).column)}" for o in order
            )
        if lock and connection.features.has_select_for_update:
            of = " OF t0" if connection.features.has_select_for_update_of else ""
            self.sql += f" FOR UPDATE{of}"

    def build(self, row: Sequence[Any]) -> dict[str, models.Model | None]:
        """Return each path's instance ("" the row itself), as the ORM would make them."""
        made: dict[str, models.Model | None] = {}
        start = 0
        for path, model, fields, converters in self.parts:
            values = list(row[start : start + len(fields)])
            start += len(fields)
            if path and all(v is None for v in values):
                made[path] = None  # A null foreign key: nothing joined.
                continue
            for i, (col, found) in enumerate(converters):
                for converter in found:
                    values[i] = converter(values[i], col, connection)
            made[path] = model.from_db(connection.alias, [f.attname for f in fields], values)
        for parent_path, path, fk in self.links:
            parent = made[parent_path]
            if parent is not None:
                fk.set_cached_value(parent, made[path])
        return made


_JOINED: dict[tuple[Any, ...], _Joined] = {}


def row_with_related(
    model: type[M], pk: Any, paths: Sequence[str], *, lock: bool = False
) -> M | None:
    """Return the row ``pk`` of ``model`` with the rows of ``paths`` (foreign keys, as
    ``select_related`` names them) attached, or None. ``lock``: ``FOR UPDATE`` where
    the database has it (inside a transaction, as the ORM's ``select_for_update``)."""
    key = (model, tuple(paths), lock, connection.vendor)
    joined = _JOINED.get(key)
    if joined is None:
        joined = _JOINED[key] = _Joined(model, paths, lock)
    with connection.cursor() as cursor:
        cursor.execute(joined.sql, [field_of(model, "pk").get_db_prep_value(pk, connection)])
        row = cursor.fetchone()
    if row is None:
        return None
    root = joined.build(row)[""]
    return root if isinstance(root, model) else None


def rows_where(model: type[M], name: str, value: Any, *, order: Sequence[str] = ()) -> list[M]:
    """Return the rows of ``model`` whose field ``name`` equals ``value``, in ``order``,
    as the ORM's ``filter(name=value).order_by(*order)`` would make them."""
    key = (model, (), False, connection.vendor, name, tuple(order))
    joined = _JOINED.get(key)
    if joined is None:
        joined = _JOINED[key] = _Joined(model, [], False, by=name, order=order)
    with connection.cursor() as cursor:
        cursor.execute(joined.sql, [field_of(model, name).get_db_prep_value(value, connection)])
        rows = cursor.fetchall()
    return [row for row in (joined.build(r)[""] for r in rows) if isinstance(row, model)]


def value_max(model: type[models.Model], name: str, *, equal: dict[str, Any]) -> Any:
    """Return ``MAX(name)`` over the rows passing ``equal`` (None when there are none)."""
    if any(isinstance(v, Collection) and not isinstance(v, str) and not v for v in equal.values()):
        return None
    key = ("max", model, name, _shape(equal, {}))
    tests, params = _tests(model, equal, {})
    sql = _SQL.get(key)
    if sql is None:
        table = connection.ops.quote_name(model._meta.db_table)
        sql = _SQL[key] = (
            f"SELECT MAX({_column(model, name)}) FROM {table} WHERE {' AND '.join(tests)}"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None
