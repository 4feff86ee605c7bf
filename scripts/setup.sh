#!/usr/bin/env bash
# Creates the project environment in .venv at the repository root and installs shg into it
# with the pinned constraints. A no-op (well under a second) when nothing changed since the
# last install: the stamp is a hash of pyproject.toml and constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

py="${PYTHON:-}"
if [ -z "$py" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then py="$candidate"; break; fi
  done
fi
[ -n "$py" ] || { echo "setup: no python3.11 found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2; exit 1; }

# Chromium for tests/integration/test_browser_ui.py (Debian's package; Playwright drives it, nothing is
# downloaded by Playwright). Installed only when missing and running as root; otherwise that
# test skips and says why.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: could not install chromium; the browser test will skip" >&2
  else
    echo "setup: no chromium (apt-get install -y chromium as root); the browser test will skip" >&2
  fi
fi

# PostgreSQL 15 for tests/integration/test_team_tracking.py (Debian's package; the test starts and stops its own
# throwaway cluster). No default cluster is created or started by the install. Installed only
# when missing and running as root; otherwise that test skips and says why.
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/shg-no-main-cluster.conf
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null) \
      || echo "setup: could not install postgresql-15; the team tracking test will skip" >&2
  else
    echo "setup: no PostgreSQL 15 (apt-get install -y postgresql-15 as root); the team tracking test will skip" >&2
  fi
fi

stamp=.venv/.shg-install-stamp
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-32)"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 11), f"shg needs Python 3.11, .venv has {sys.version.split()[0]}"'
.venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
# torch==2.13.0 is pinned; on machines with a CPU wheel in pip's find-links it is taken from there.
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test,bench,browser,services]'
echo "$want" > "$stamp"
echo "setup: .venv ready ($(.venv/bin/python --version))"
