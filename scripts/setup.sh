#!/usr/bin/env bash
# Creates the project environment in .venv at the repository root and installs shg into it
# with the pinned constraints: constraints.txt (everything but the torch build) plus
# constraints/cpu.txt (default: torch 2.13.0+cpu) or, with SHG_TORCH=cuda,
# constraints/cuda.txt (PyPI's CUDA 13 build of torch 2.13.0 and its NVIDIA wheels).
# A no-op (well under a second) when nothing changed since the last install: the stamp is a
# hash of pyproject.toml, the constraint files and the torch build.
set -euo pipefail
cd "$(dirname "$0")/.."

torch_build="${SHG_TORCH:-cpu}"
case "$torch_build" in
  cpu|cuda) ;;
  *) echo "setup: SHG_TORCH must be cpu or cuda, not '$torch_build'" >&2; exit 1 ;;
esac

# Python 3.11 (what CI and the image run) or 3.12; 3.11 is taken when both are there. A
# candidate must run, not just be on PATH (a pyenv shim for a version not selected does not).
python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))' >/dev/null 2>&1; }
py="${PYTHON:-}"
if [ -n "$py" ]; then
  python_ok "$py" || { echo "setup: PYTHON=$py is not a working Python 3.11 or 3.12" >&2; exit 1; }
else
  for candidate in python3.11 python3.12 python3; do
    if python_ok "$candidate"; then py="$candidate"; break; fi
  done
fi
[ -n "$py" ] || { echo "setup: no Python 3.11 or 3.12 found; install one or set PYTHON=/path/to/python3.11" >&2; exit 1; }

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
want="$( (cat pyproject.toml constraints.txt "constraints/$torch_build.txt"; echo "$torch_build") | sha256sum | cut -c1-32)"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
python_ok .venv/bin/python || { echo "setup: .venv has $(.venv/bin/python --version 2>&1), shg needs Python 3.11 or 3.12; remove .venv and run again" >&2; exit 1; }
.venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel

# The CPU build of torch is published on PyTorch's CPU index, not on PyPI. Where that index's
# host does not resolve (CI's machine), pip takes the same wheel from its configured find-links.
index=()
cpu_index=https://download.pytorch.org/whl/cpu
if [ "$torch_build" = cpu ] && .venv/bin/python -c 'import socket; socket.getaddrinfo("download.pytorch.org", 443)' >/dev/null 2>&1; then
  index=(--extra-index-url "$cpu_index")
fi
.venv/bin/python -m pip install --quiet ${index[@]+"${index[@]}"} -c constraints.txt -c "constraints/$torch_build.txt" -e '.[test,bench,browser,services]' || {
  [ "$torch_build" = cpu ] && [ ${#index[@]} = 0 ] \
    && echo "setup: $cpu_index could not be reached and pip found no torch 2.13.0+cpu wheel elsewhere (pip's find-links); reach that index, or use SHG_TORCH=cuda for PyPI's CUDA build" >&2
  exit 1
}
echo "$want" > "$stamp"
echo "setup: .venv ready ($(.venv/bin/python --version), torch $torch_build build)"
