"""What the Conflicts panel makes of an edited merge and how it shows a side. A title merged as ``2024`` was
read as JSON and saved as the number 2024, which the server refused, so the conflict came back everywhere
(found by QA); a stage or tags showed as bare ids; a refused edit as raw JSON, and only dismissable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from outputhub.common.errors import InvalidInputError
from outputhub.desktop.services.conflicts import ConflictItem, ConflictService
from outputhub.desktop.services.editing import make_editor
from outputhub.desktop.storage.sync_store import REJECTED_FIELD
from outputhub.desktop.ui.conflicts import as_text, field_label, from_text, side_text
from outputhub.sync.client import LocalEditError
from tests.qt.support import library_for, seed

DRAFT, PROD = str(uuid.uuid4()), str(uuid.uuid4())
LABELS = {DRAFT: "Draft", PROD: "Production"}


def item(
    entity: str, field: str, kind: str, base: object, mine: object, theirs: object, **kw: object
) -> ConflictItem:
    return ConflictItem(
        "c1",
        entity,
        "r1",
        "label",
        field,
        kind,
        base,
        mine,
        theirs,
        mine,
        "",
        datetime.now(UTC),
        **kw,  # type: ignore[arg-type]
    )


def test_an_edited_merge_takes_the_fields_own_type() -> None:
    title = item("prompt", "title", "scalar", "Old", "Mine", "Theirs")
    assert from_text(title, "2024") == "2024"
    assert from_text(title, "true\n") == "true"
    position = item("tag", "position", "scalar", 1, 2, 3)
    assert from_text(position, " 7 ") == 7
    with pytest.raises(InvalidInputError, match="whole number"):
        from_text(position, "seven")
    body = item("prompt", "body", "text", "a", "b", "c")
    assert from_text(body, "  kept as typed\n") == "  kept as typed\n"


def test_references_show_by_name_and_an_edited_merge_names_them_back() -> None:
    stage = item("prompt", "development_stage_id", "scalar", None, DRAFT, PROD, labels=LABELS)
    assert field_label(stage) == "development stage"
    assert side_text(stage, stage.mine) == f"Draft  [{DRAFT}]"
    assert from_text(stage, f"Production  [{PROD}]") == PROD
    assert from_text(stage, "draft") == DRAFT
    cafe = {DRAFT: "Caf\u00e9", PROD: "Tea"}  # a name typed in another Unicode normal form names it too
    named = item("prompt", "development_stage_id", "scalar", None, DRAFT, PROD, labels=cafe)
    assert from_text(named, " CAFE\u0301") == DRAFT
    assert from_text(stage, PROD.upper()) == PROD
    assert from_text(stage, "\n") is None
    with pytest.raises(InvalidInputError, match="one entry"):
        from_text(stage, "Draft\nProduction")
    with pytest.raises(InvalidInputError, match="not one of the entries shown"):
        from_text(stage, "Staging")
    tags = item("prompt", "tag_ids", "set", [], [DRAFT], [PROD], labels=LABELS)
    assert field_label(tags) == "tags"
    assert as_text([PROD, DRAFT], LABELS) == f"Draft  [{DRAFT}]\nProduction  [{PROD}]"
    assert from_text(tags, as_text([PROD, DRAFT], LABELS)) == frozenset({DRAFT, PROD})


def test_a_replica_refuses_a_value_of_the_wrong_type_as_it_is_made(replica) -> None:
    ids = seed(replica)
    library = library_for(replica)
    with pytest.raises(LocalEditError, match=r"prompt\.title must be text, not int"):
        library.edit("prompt", ids["prompt"], {"title": 2024})
    with pytest.raises(LocalEditError, match=r"tag\.position must be a whole number"):
        library.edit("tag", ids["tag_sql"], {"position": "3"})
    assert replica.get_prompt(id=ids["prompt"]).title == "Linux Terminal"  # type: ignore[union-attr]


def _refused_by_a_viewer(replica, conflict_id: str, prompt_id: str, values: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    """A viewer's update of the prompt, refused by the server, as a sync keeps it."""
    replica.add_conflict(
        id=conflict_id,
        entity="prompt",
        record_id=prompt_id,
        field=REJECTED_FIELD,
        base=None,
        mine={"kind": "update", "values": values},
        theirs={"reason": "permission-denied: the viewer role may not edit"},
    )


def test_a_refused_edit_is_shown_in_words_and_keep_mine_makes_it_again(replica) -> None:
    ids = seed(replica)
    _refused_by_a_viewer(replica, "refused-1", ids["prompt"], {"title": "Viewer tried this"})
    service = ConflictService(replica=replica, editor=make_editor(replica))
    [shown] = service.open_conflicts()
    assert field_label(shown) == "refused by the server"
    assert side_text(shown, shown.mine) == "Your update of this prompt\ntitle: Viewer tried this"
    assert side_text(shown, shown.theirs) == "Refused: permission-denied: the viewer role may not edit"

    _refused_by_a_viewer(
        replica,
        "refused-2",
        ids["prompt"],
        {"development_stage_id": ids["production"], "tag_ids": [ids["tag_sql"]]},
    )
    [named] = [c for c in service.open_conflicts() if c.id == "refused-2"]
    assert side_text(named, named.mine) == (
        f"Your update of this prompt\ndevelopment stage: Production  [{ids['production']}]\n"
        f"tags: sql  [{ids['tag_sql']}]"
    )
    service.resolve(conflict_id="refused-2", choice="theirs")
    service.resolve(conflict_id="refused-1", choice="mine")
    assert replica.get_prompt(id=ids["prompt"]).title == "Viewer tried this"  # type: ignore[union-attr]
    assert service.open_conflicts() == []


def test_the_conflicts_list_shows_several_rows_in_a_laptop_sized_window(qtbot, session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """At 1280x800 the list above the base / mine / theirs panes showed about two conflicts (QA)."""
    window = session.window
    window.resize(1280, 800)
    page = window.pages.conflicts
    window.show_page(window.NAMES.index("Conflicts"))
    qtbot.waitUntil(lambda: page.isVisible(), timeout=5000)
    table = page.list.table
    rows = table.viewport().height() // table.verticalHeader().defaultSectionSize()
    assert rows >= 6, rows
    lines = page.mine.viewport().height() // page.mine.fontMetrics().lineSpacing()
    assert lines >= 4, lines  # and each side still shows a few lines of text
    window.grab().save(str(tmp_path / "conflicts.png"))
