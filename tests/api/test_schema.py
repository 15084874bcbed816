"""Alembic builds the same schema on both backends, and it matches the ORM tables."""

from __future__ import annotations

from sqlalchemy import inspect

from outputhub.server.storage import migrate
from outputhub.server.storage.tables import Base


def describe(engine) -> dict[str, object]:
    insp = inspect(engine)
    tables = {}
    for name in insp.get_table_names():
        if name == "alembic_version":
            continue
        tables[name] = {
            "columns": {
                c["name"]: (c["nullable"], type(c["type"]).__name__ in ("UUID", "Uuid", "CHAR", "NUMERIC"))
                for c in insp.get_columns(name)
            },
            "pk": sorted(insp.get_pk_constraint(name)["constrained_columns"]),
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"]) for f in insp.get_foreign_keys(name)
            ),
            "uniques": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(name)),
            # PostgreSQL also lists the index behind each unique constraint; compare the declared indexes
            "indexes": sorted(
                (i["name"], bool(i["unique"]))
                for i in insp.get_indexes(name)
                if i["name"] not in {u["name"] for u in insp.get_unique_constraints(name)}
            ),
        }
    return tables


def test_migrated_schema_is_identical_on_both_backends(app, backend):
    engine = app.state.services.engine
    assert migrate.current_revision(engine) == migrate.head_revision()
    described = describe(engine)
    assert set(described) == set(Base.metadata.tables)
    for name, table in Base.metadata.tables.items():
        assert set(described[name]["columns"]) == {c.name for c in table.columns}, name
        assert described[name]["pk"] == sorted(c.name for c in table.primary_key.columns), name
    # record the shape per backend; the second backend to run compares against the first
    test_migrated_schema_is_identical_on_both_backends.seen[backend] = {
        n: {k: v for k, v in d.items() if k != "columns"} | {"columns": sorted(d["columns"])}
        for n, d in described.items()
    }
    shapes = list(test_migrated_schema_is_identical_on_both_backends.seen.values())
    if len(shapes) == 2:
        assert shapes[0] == shapes[1]


test_migrated_schema_is_identical_on_both_backends.seen = {}
