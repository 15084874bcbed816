"""The ``outputhub`` command's entry point: light, so that Ctrl+C while the command's modules load (about
half a second) is said in a line, not as a traceback from the middle of an import (QA)."""

from __future__ import annotations

import json
import sys

INTERRUPTED_EARLY = "interrupted (Ctrl+C) before the command started: nothing was changed"


def main() -> None:
    try:
        from outputhub.server.cli import main as run
    except KeyboardInterrupt:
        print(f"error: {INTERRUPTED_EARLY}", file=sys.stderr)
        if "--json" in sys.argv[1:]:  # as every error with --json: an object on stdout too
            print(json.dumps({"error": INTERRUPTED_EARLY, "exit": 130}))
        raise SystemExit(130) from None
    run()
