"""Render the desktop app's main screens to PNG files (docs/screenshots/desktop-*.png).

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m outputhub.desktop.screenshots [--out docs/screenshots]

Builds a demo library in a temporary encrypted replica (through ``LocalLibrary``, like a user would), opens
the real main window at 1280x800 and grabs each page, the capture dialog and the unlock dialog. The Conflicts
page shows a demo conflict record (a real one needs a second device and a server; see tests/qt/test_sync.py).
Works with the offscreen platform (no display needed) or under ``xvfb-run``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication, QWidget

from outputhub.desktop.app import build_window, unlock_dialog
from outputhub.desktop.jobs import JobRunner
from outputhub.desktop.storage import OutputRecord, Replica, open_replica
from outputhub.desktop.storage.sync_store import ReplicaSyncStore
from outputhub.sync.client import LocalLibrary

PASSPHRASE = "demo horse battery staple"
PROMPTS = (
    (
        "Linux terminal",
        "I want you to act as a Linux terminal.\nReply with the terminal output only.",
        "Production",
    ),
    (
        "English translator",
        "Translate what I write into English.\nKeep the meaning, improve the style.",
        "Review",
    ),
    ("SQL tutor", "Explain the SQL query I paste, clause by clause.", "Draft"),
    ("Travel guide", "Suggest places to visit near the location I give.", "Production"),
    ("Code reviewer", "Review this diff for bugs, style and security issues.", "Review"),
    ("Storyteller", "Tell an engaging story for the audience I describe.", "Draft"),
    ("Interviewer", "Act as an interviewer for the position I name.", "Idea"),
    ("Excel sheet", "Act as a text-based spreadsheet.", "Production"),
)
ANSWERS = (
    "total 12\ndrwxr-xr-x 2 user user 4096 Jan  1 12:00 src\n-rw-r--r-- 1 user user  220 Jan  1 12:00 README",
    "The meeting was moved to Thursday because the venue was unavailable.",
    "SELECT picks the columns, FROM names the table, WHERE keeps the rows that match the condition.",
    "Near the Louvre: the Tuileries garden, the Palais-Royal and the Musée d'Orsay across the river.",
    "Line 42 builds SQL by string concatenation: use a parameterized query instead.",
    "Once upon a time, a lighthouse keeper found a message in a bottle that was addressed to her.",
    "Tell me about a time you had to deliver a project under a tight deadline.",
    "|   | A     | B    |\n| 1 | Month | Sales |\n| 2 | Jan   | 1200 |",
)


def seed_demo(replica: Replica) -> None:
    lib = LocalLibrary(ReplicaSyncStore(replica))

    def lookups(entity: str, names: tuple[str, ...]) -> dict[str, str]:
        return {n: lib.create(entity, {"name": n, "position": i}) for i, n in enumerate(names)}

    stages = lookups("development_stage", ("Idea", "Draft", "Review", "Production"))
    tags = lookups("tag", ("backend", "data", "docs", "education", "marketing", "ops", "writing"))
    models = lookups("gpt_model", ("GPT-4o", "GPT-4.1", "o3", "Claude"))
    levels = lookups("accuracy_level", ("Accurate", "Mostly accurate", "Partly wrong", "Wrong"))
    kinds = lookups("knowledge_type", ("Code", "Prose", "Data", "Facts"))
    groups = lookups("agent_group", ("Engineering", "Support", "Content"))
    gpts = {
        name: lib.create(
            "custom_gpt",
            {
                "name": name,
                "gpt_model_id": models[model],
                "agent_group_ids": {groups[group]},
                "description": desc,
            },
        )
        for name, model, group, desc in (
            ("Shell helper", "GPT-4o", "Engineering", "Answers like a terminal"),
            ("Support writer", "GPT-4.1", "Support", "Drafts customer replies"),
            ("Data analyst", "o3", "Engineering", "Explains queries and numbers"),
            ("Blog assistant", "Claude", "Content", "Outlines and edits posts"),
        )
    }
    rng = random.Random(4)
    prompt_ids = []
    for i, (title, body, stage) in enumerate(PROMPTS):
        pid = lib.create(
            "prompt",
            {
                "title": title,
                "body": body,
                "development_stage_id": stages[stage],
                "tag_ids": set(rng.sample(sorted(tags.values()), 2)),
                "description": "",
            },
        )
        prompt_ids.append(pid)
        if i in (0, 1):
            lib.edit("prompt", pid, {"body": body + "\nNever explain unless I ask."})
    t0 = datetime.now(UTC) - timedelta(days=200)
    weights = (5, 3, 2, 1)
    rows = []
    for n in range(1200):
        p = n % len(PROMPTS)
        at = t0 + timedelta(hours=4 * n)
        rows.append(
            OutputRecord(
                id=f"00000000-0000-4000-8000-{n:012d}",
                org_id="local",
                prompt_id=prompt_ids[p],
                content=f"{ANSWERS[p]}\n\n(run {n})",
                gpt_model_id=list(models.values())[n % 4],
                custom_gpt_id=list(gpts.values())[n % 4] if n % 3 else None,
                accuracy_level_id=rng.choices(list(levels.values()), weights=weights)[0],
                knowledge_type_ids=(list(kinds.values())[p % 4],),
                tag_ids=(rng.choice(list(tags.values())),),
                produced_at=at,
                created_at=at,
                updated_at=at,
            )
        )
    replica.bulk_insert_outputs(rows)
    replica.add_conflict(
        id="7f1d7a1e-0000-4000-8000-000000000001",
        entity="prompt",
        record_id=prompt_ids[1],
        field="body",
        base="Translate what I write into English.",
        mine="Translate what I write into English.\nKeep the meaning, improve the style.",
        theirs="Translate what I write into British English.",
    )


def settle(app: QApplication, runner: JobRunner, seconds: float = 0.4) -> None:
    deadline = time.monotonic() + 15
    while runner.running and time.monotonic() < deadline:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def grab(widget: QWidget, path: Path) -> None:
    widget.grab().save(str(path))
    print(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the desktop screens to PNG files.")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    runner = JobRunner(max_threads=2)
    with tempfile.TemporaryDirectory(prefix="outputhub-shots-") as tmp:
        path = Path(tmp) / "demo-library.ohb"
        dialog = unlock_dialog(path=path, runner=runner)
        dialog.passphrase.setText("correct horse")
        dialog.confirm.setText("correct horse")
        dialog.show()
        settle(app, runner)
        grab(dialog, args.out / "desktop-create-library.png")
        dialog.close()
        replica = open_replica(path, passphrase=PASSPHRASE, create=True)
        try:
            seed_demo(replica)
            session = build_window(replica=replica, runner=runner, sync_interval_ms=3_600_000)
            window = session.window
            window.resize(1280, 800)
            window.show()
            names = {
                "Prompts": "prompts",
                "Outputs": "outputs",
                "Custom GPTs": "custom-gpts",
                "Taxonomy": "taxonomy",
                "Conflicts": "conflicts",
                "Analytics": "analytics",
                "Settings": "settings",
            }
            for index, (name, slug) in enumerate(names.items()):
                window.navigation.setCurrentRow(index)
                settle(app, runner)
                page = window.stack.currentWidget()
                if name == "Prompts":
                    page.list.table.selectRow(0)
                    settle(app, runner)
                if name == "Outputs":
                    page.list.table.selectRow(1)
                    settle(app, runner)
                if name == "Conflicts":
                    page.list.table.selectRow(0)
                    settle(app, runner)
                if name == "Analytics":
                    settle(app, runner, 1.0)
                grab(window, args.out / f"desktop-{slug}.png")
                if name == "Prompts":
                    translator = next(r for r in page.model.rows() if r.title == "English translator")
                    page.list.select_id(translator.id)
                    settle(app, runner)
                    page.tabs.setCurrentIndex(1)
                    settle(app, runner)
                    grab(window, args.out / "desktop-prompt-history.png")
                    page.tabs.setCurrentIndex(0)
            window.navigation.setCurrentRow(1)
            app.clipboard().setText(
                "The meeting was moved to Thursday\nbecause the venue was unavailable."
            )
            window.pages.outputs.capture()
            settle(app, runner)
            capture = window.pages.outputs.dialog
            assert capture is not None
            capture.prompt.setCurrentIndex(capture.prompt.findText("English translator"))
            capture.gpt_model.setCurrentIndex(capture.gpt_model.findText("GPT-4o"))
            capture.accuracy.setCurrentIndex(capture.accuracy.findText("Accurate"))
            capture.tags.check_label("writing")
            capture.knowledge_types.check_label("Prose")
            settle(app, runner)
            grab(capture, args.out / "desktop-capture.png")
            capture.reject()
            settle(app, runner)
            window.close()
        finally:
            runner.wait_for_done(30_000)
            replica.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
