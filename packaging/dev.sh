#!/usr/bin/env bash
# Output Hub developer entry point: installs what the project needs, then serves or tests.
#   bash packaging/dev.sh serve [--host H] [--port P]   install, then run the server on the embedded default
#   bash packaging/dev.sh test [pytest args]              install, then ruff + the whole test suite
#   bash packaging/dev.sh setup                           install only
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OUTPUTHUB_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

apt_install() {
  # Debian packages the tests need; installed only when missing.
  local missing=()
  if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing+=(postgresql)
  fi
  if ! command -v redis-server >/dev/null; then missing+=(redis-server); fi
  # the portal's browser tests (tests/browser) drive Debian's Chromium through Playwright
  if ! command -v chromium >/dev/null; then missing+=(chromium); fi
  # Qt (PySide6 wheels) on a headless Debian: the shared libraries the offscreen platform plugin loads,
  # and a font so rendered text (tests, docs/screenshots) is readable
  local qt_lib
  for qt_lib in libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 fonts-dejavu-core; do
    if ! dpkg -s "$qt_lib" >/dev/null 2>&1; then missing+=("$qt_lib"); fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null; then
      echo "installing Debian packages: ${missing[*]}"
      as_root apt-get update -qq
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "warning: please install ${missing[*]} (needed by the tests)" >&2
    fi
  fi
}

setup() {
  local extras="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" || { as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null && "$PYTHON" -m venv "$VENV"; }
  fi
  local stamp="$VENV/.outputhub-installed-$extras"
  # reinstall when pyproject.toml changed since the last install
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e "$ROOT[$extras]"
    touch "$stamp"
  fi
}

cmd="${1:-}"
shift || true
case "$cmd" in
  serve)
    setup server
    exec "$VENV/bin/outputhub" serve "$@"
    ;;
  test)
    apt_install
    setup test
    cd "$ROOT"
    "$VENV/bin/ruff" check .
    export QT_QPA_PLATFORM=offscreen
    # One test process per core, at most four (each has its own apps, databases and servers), a file per
    # process at a time so that a module's servers stay in one process; OUTPUTHUB_TEST_WORKERS=0 runs in
    # this process alone.
    local_workers="${OUTPUTHUB_TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}"
    if [ "$local_workers" -gt 4 ]; then local_workers=4; fi
    exec "$VENV/bin/python" -m pytest -q -n "$local_workers" --dist loadfile "$@"
    ;;
  setup)
    apt_install
    setup test
    ;;
  *)
    sed -n '2,6p' "${BASH_SOURCE[0]}"
    exit 2
    ;;
esac
