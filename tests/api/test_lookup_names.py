"""Lookup names are unique per organization whatever Unicode normal form they are typed in: "Café" typed as
NFC (U+00E9) and as NFD (e + U+0301, as macOS input often gives it) is one name, stored stripped and in NFC
(``common/names.py``). Migration 0013 brings the data written before in line."""

from __future__ import annotations

import unicodedata
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from outputhub.server.api.base import allocate_revisions
from outputhub.server.storage.database import set_tenant, unit_of_work
from outputhub.server.storage.tables import Tag
from tests.support.client import new_org

CAFE_NFC = "Caf\u00e9"
CAFE_NFD = "Cafe\u0301"
SLUGS = ("tags", "knowledge-types", "accuracy-levels", "development-stages", "gpt-models", "agent-groups")


def _nfc(value: str) -> bool:
    return unicodedata.is_normalized("NFC", value)


@pytest.mark.parametrize("slug", SLUGS)
def test_a_name_typed_in_another_normal_form_is_taken(client: TestClient, slug: str) -> None:
    org = new_org(client, name="Normal forms")
    o = org.owner
    made = o.post(f"{org.base}/{slug}", json={"name": CAFE_NFC})
    assert made.status_code == 201, made.text
    again = o.post(f"{org.base}/{slug}", json={"name": CAFE_NFD})
    assert again.status_code == 409, again.text
    assert [e["field"] for e in again.json()["errors"]] == ["body.name"]
    other = o.post(f"{org.base}/{slug}", json={"name": "Tea"}).json()["id"]
    renamed = o.patch(f"{org.base}/{slug}/{other}", json={"name": f" {CAFE_NFD.upper()} "})
    assert renamed.status_code == 409, renamed.text
    assert [e["field"] for e in renamed.json()["errors"]] == ["body.name"]
    names = [i["name"] for i in o.get(f"{org.base}/{slug}", params={"limit": 500}).json()["items"]]
    assert names.count(CAFE_NFC) == 1 and CAFE_NFD not in names


def test_names_are_stored_stripped_and_in_nfc(client: TestClient) -> None:
    org = new_org(client, name="Stored NFC")
    o = org.owner
    made = o.post(f"{org.base}/tags", json={"name": f"  {CAFE_NFD}  "})
    assert made.status_code == 201, made.text
    tag = made.json()["id"]
    assert made.json()["name"] == CAFE_NFC
    assert o.get(f"{org.base}/tags/{tag}").json()["name"] == CAFE_NFC
    # the NFC form passes the REST API's own check: the name the same tag is found by
    taken = o.post(f"{org.base}/tags", json={"name": CAFE_NFC})
    assert taken.status_code == 409, taken.text

    crème_nfd = "Cre\u0300me"
    renamed = o.patch(f"{org.base}/tags/{tag}", json={"name": f"\t{crème_nfd} "})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Cr\u00e8me" and _nfc(renamed.json()["name"])
    # a rename to the same name in another form changes nothing
    same = o.patch(f"{org.base}/tags/{tag}", json={"name": "Cr\u00e8me"})
    assert same.status_code == 200 and same.json()["name"] == "Cr\u00e8me"

    # the pull feed gives the stored name
    pulled = o.get(f"{org.base}/sync/changes", params={"protocol": 1, "since": 0, "limit": 1000}).json()
    [record] = [r for r in pulled["records"] if r["id"] == tag]
    assert record["data"]["name"] == "Cr\u00e8me"


def test_a_name_nfc_makes_longer_than_the_limit_is_refused_naming_it(client: TestClient) -> None:
    """U+0958 (DEVANAGARI LETTER QA) has no composed form in NFC: 200 of them are 400 characters stored; the
    limit is checked on the stored form (a 422 naming the field, not a 500 from the column)."""
    org = new_org(client, name="Long NFC")
    long_name = "\u0958" * 200
    assert len(unicodedata.normalize("NFC", long_name)) == 400
    r = org.owner.post(f"{org.base}/tags", json={"name": long_name})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["body.name"]
    assert "is 400 characters once stored in Unicode NFC" in r.json()["errors"][0]["message"], r.text


@pytest.mark.parametrize("name", ["\u00df" * 200, "\u0130" * 200, "\ufb03" * 200])
def test_a_name_whose_key_is_longer_than_the_name_is_stored(client: TestClient, name: str) -> None:
    """Case folding writes some letters longer ("ß" as "ss", "ﬃ" as "ffi"): the key of a 200-character name
    is up to three times as long, and its column held 200 (a 500 on PostgreSQL, a 201 on SQLite)."""
    org = new_org(client, name="Long keys")
    o = org.owner
    made = o.post(f"{org.base}/tags", json={"name": name})
    assert made.status_code == 201, made.text
    again = o.post(f"{org.base}/tags", json={"name": f" {name} "})
    assert again.status_code == 409, again.text
    other = o.post(f"{org.base}/knowledge-types", json={"name": "x"}).json()["id"]
    renamed = o.patch(f"{org.base}/knowledge-types/{other}", json={"name": name})
    assert renamed.status_code == 200 and renamed.json()["name"] == name, renamed.text


# -- migration 0013: the data written before -----------------------------------------------------------------


def _legacy_rename(app: Any, org_id: str, tag: str, name: str) -> None:
    """Rename ``tag`` as the REST API did before names were normalized: the name as typed, the key its
    stripped case fold, a new revision (the sync layer derives the server's edit from the row)."""
    with unit_of_work(app.state.services.session_factory) as session:
        set_tenant(session, org_id=uuid.UUID(org_id))
        row = session.execute(select(Tag).where(Tag.id == uuid.UUID(tag))).scalar_one()
        row.name, row.name_key = name, name.strip().casefold()
        row.revision = allocate_revisions(session, org_id=uuid.UUID(org_id))


def _row(app: Any, org_id: str, tag: str) -> tuple[str, str, int]:
    with unit_of_work(app.state.services.session_factory) as session:
        set_tenant(session, org_id=uuid.UUID(org_id))
        row = session.execute(select(Tag).where(Tag.id == uuid.UUID(tag))).scalar_one()
        return row.name, row.name_key, row.revision


def test_upgrading_normalizes_the_names_written_before_and_leaves_colliding_ones(
    app: FastAPI, client: TestClient, tmp_path: Path
) -> None:
    """Migration 0013 recomputes every lookup's key and stores its name in NFC (with a new revision, so every
    replica gets it at its next sync). Two live entries of one organization whose names are one name under
    the new rule ("Café" made as NFC and as NFD before) keep their names and are not deleted; one holds the
    key, the other takes it once the first is renamed or deleted."""
    from outputhub.server.storage import migrate
    from tests.support.migrations import downgrade_to
    from tests.sync.support import as_an_older_replica, make_device

    org = new_org(client, name="Legacy names")
    o = org.owner
    made = {n: o.post(f"{org.base}/tags", json={"name": n}).json()["id"] for n in "abcdefghijk"}
    _legacy_rename(app, org.id, made["a"], "Cre\u0300me")  # alone in its name: normalized
    _legacy_rename(app, org.id, made["b"], CAFE_NFD)  # and c as CAFE_NFC: they collide, both left
    _legacy_rename(app, org.id, made["c"], CAFE_NFC)
    _legacy_rename(app, org.id, made["d"], "Nai\u0308ve")  # deleted: its key follows the rule
    assert o.delete(f"{org.base}/tags/{made['d']}").status_code == 204
    _legacy_rename(app, org.id, made["e"], "\u0958" * 200)  # 400 characters in NFC: its name is kept
    _legacy_rename(app, org.id, made["f"], "Nai\u0308f")  # and g as NFC: a pair one deletes through sync
    _legacy_rename(app, org.id, made["g"], "Na\u00eff")
    _legacy_rename(app, org.id, made["h"], "Cre\u0302pe")  # and i: one push deletes i and makes "crêpe"
    _legacy_rename(app, org.id, made["i"], "Cr\u00eape")
    _legacy_rename(app, org.id, made["j"], "The\u0301")  # and k: a conflict's resolution renames k
    _legacy_rename(app, org.id, made["k"], "Th\u00e9")
    before = {k: _row(app, org.id, t) for k, t in made.items()}
    assert before["a"][0] == "Cre\u0300me" and before["b"][1] != before["c"][1]

    laptop, desktop = (
        make_device(tmp_path, name, http=client, base_url="", token=o.token, org_id=org.id)
        for name in ("laptop", "desktop")
    )  # synced before the upgrade: they hold the old spellings
    try:
        laptop.sync()
        desktop.sync()
        assert laptop.library.get("tag", made["a"])["name"] == "Cre\u0300me"

        engine = app.state.services.engine
        downgrade_to(engine, "0012")
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()

        normalized = _row(app, org.id, made["a"])
        assert normalized[:2] == ("Cr\u00e8me", "cr\u00e8me") and normalized[2] > before["a"][2]
        assert o.get(f"{org.base}/tags/{made['a']}").json()["name"] == "Cr\u00e8me"
        # of a pair, the one that had the key keeps it; the other keeps its name, and a key no name has
        assert _row(app, org.id, made["b"]) == (before["b"][0], f" #0013#{made['b']}", before["b"][2])
        # its own name sent back as served, with another field, is no rename
        patched = o.patch(f"{org.base}/tags/{made['b']}", json={"name": CAFE_NFD, "description": "d"})
        assert patched.status_code == 200, patched.text
        # a tag named as its key reads is another name
        lookalike = o.post(f"{org.base}/tags", json={"name": f"#0013#{made['b']}"})
        assert lookalike.status_code == 201, lookalike.text
        assert _row(app, org.id, made["c"]) == before["c"]
        _name, key, revision = _row(app, org.id, made["d"])
        assert key == "na\u00efve" and revision == before["d"][2]
        assert _row(app, org.id, made["e"])[:2] == ("\u0958" * 200, "\u0915\u093c" * 200)

        report = laptop.sync()
        assert report.checksum_ok is not False and report.refused == []
        assert laptop.library.get("tag", made["a"])["name"] == "Cr\u00e8me"
        assert laptop.replica.list_conflicts() == []
        # the new rule holds for the normalized one, as for any name
        taken = o.post(f"{org.base}/tags", json={"name": "CRE\u0300ME"})
        assert taken.status_code == 409, taken.text
        # once one of a pair is deleted (as the migration's log advises), the other's name is taken again
        assert o.delete(f"{org.base}/tags/{made['c']}").status_code == 204
        again = o.post(f"{org.base}/tags", json={"name": CAFE_NFC.upper()})
        assert again.status_code == 409, again.text
        laptop.library.delete("tag", made["g"])
        assert laptop.sync().refused == []
        again = o.post(f"{org.base}/tags", json={"name": "NA\u00cfF"})
        assert again.status_code == 409, again.text
        # one push (an older replica's) deletes one of a pair, then makes its name: merged into the other
        crepe = str(uuid.uuid4())
        laptop.library.delete("tag", made["i"])
        as_an_older_replica(laptop, "tag", crepe, {"name": "cr\u00eape", "position": 0})
        assert laptop.sync().refused == []
        assert o.get(f"{org.base}/tags/{crepe}").status_code == 404
        assert _row(app, org.id, made["h"])[1] == "cr\u00eape"
        # a conflict's resolution renames one of a pair: the other's name stays taken
        laptop.library.edit("tag", made["k"], {"name": "Coffee"})
        as_an_older_replica(desktop, "tag", made["k"], {"name": "TH\u00c9"})  # apart, and later
        assert desktop.sync().refused == []
        assert laptop.sync().refused == []  # the older rename: a conflict, "THÉ" stays
        [conflict] = [c for c in o.get(f"{org.base}/sync/conflicts").json() if c["record_id"] == made["k"]]
        assert conflict["loser"]["value"] == "Coffee", conflict
        resolved = o.post(f"{org.base}/sync/conflicts/{conflict['id']}/resolve", json={"keep": "loser"})
        assert resolved.status_code == 200, resolved.text
        again = o.post(f"{org.base}/tags", json={"name": "th\u00e9"})
        assert again.status_code == 409, again.text
        # upgrading again changes nothing
        downgrade_to(engine, "0012")
        migrate.upgrade(engine)
        assert _row(app, org.id, made["a"]) == normalized
    finally:
        laptop.replica.close()
        desktop.replica.close()
