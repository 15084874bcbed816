"""Checks of the pull feed's stored record data (``sync_record_states.data``) against the rows."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import Uuid, bindparam, text
from sqlalchemy.orm import Session, sessionmaker

from outputhub.server.api.sync.feed import FEEDS
from outputhub.server.storage.database import set_tenant, unit_of_work
from outputhub.sync.protocol import TABLE_ENTITIES, compact_state_wire, expand_state_wire


def stale_feed_data(
    factory: sessionmaker[Session], org_id: str | uuid.UUID, *, allow_missing: bool = False
) -> list[str]:
    """Every record of the organization whose state is current (stored at the row's revision) but whose
    stored data is missing or differs from the data built from the row and its links right now; [] when all
    agree. A write that changed a row (or its links) without the commit hook rebuilding its data shows up
    here, even when every replica agrees on the stale data; so does a stored compact state (protocol 2)
    that does not expand to the stored state with the record's data. ``allow_missing``: a NULL data (built
    on every pull, as after a purge took link rows away) is not a problem."""
    org = uuid.UUID(str(org_id))
    problems: list[str] = []
    with unit_of_work(factory, read_only=True) as session:
        set_tenant(session, org_id=org)
        dialect = session.get_bind().dialect.name
        for feed in FEEDS:
            rows = session.execute(
                text(
                    f"SELECT t.id, s.data, {feed.data_sql(dialect)}, s.state, s.wire "
                    f"FROM {feed.table.__tablename__} t "
                    "JOIN sync_record_states s ON s.org_id = t.org_id AND s.record_id = t.id "
                    "WHERE t.org_id = :org AND s.revision = t.revision"
                ).bindparams(bindparam("org", type_=Uuid)),
                {"org": org},
            )
            entity = TABLE_ENTITIES[feed.name]
            for ident, stored, fresh, state, wire in rows:
                built = json.loads(fresh)
                full = json.loads(state)
                if wire is None:
                    if compact_state_wire(entity, full, built) is not None:
                        problems.append(f"{feed.name} {ident}: no compact state stored")
                elif expand_state_wire(entity, json.loads(wire), built) != full:
                    problems.append(f"{feed.name} {ident}: compact state {wire} != {state} with data {fresh}")
                if stored is None:
                    if not allow_missing:
                        problems.append(f"{feed.name} {ident}: no stored data")
                elif json.loads(stored) != built:
                    problems.append(f"{feed.name} {ident}: stored {stored} != built {fresh}")
    return problems
