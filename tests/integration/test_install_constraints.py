"""The pinned installs resolve, for CPU and for CUDA, on every Python that pyproject admits.

pip's own resolver runs in dry-run mode (`pip install --dry-run --report`) against the real
package indexes: PyPI, and for the CPU build of torch also PyTorch's CPU index. Nothing is
installed. Each run ignores this machine's pip configuration (its find-links and local
mirrors), so what resolves here is what resolves for a user. It checks that

- the project's dependencies and extras resolve under `constraints.txt` plus the platform's
  `constraints/<platform>.txt`, from wheels only (a slim container has no compiler);
- every package in the result is pinned by those files, at the version they pin: a new
  transitive dependency of a future pin shows up here by name instead of floating;
- the CUDA set really is the CUDA build (torch pulls NVIDIA libraries), the CPU set the CPU one.

A check skips only when the index's host cannot be reached at all (no DNS answer, no route,
connection refused or timed out), and says which host; a failure of pip itself fails the test.
CI's machine cannot reach PyTorch's CPU index, so there the CPU set is checked by
`scripts/setup.sh` instead, which installs exactly that set for every CI run.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import socket
import ssl
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYPI = "https://pypi.org/simple"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# A small page per index: fetching it tells whether the host answers at all.
PROBES = {PYPI: f"{PYPI}/pip/", TORCH_CPU_INDEX: f"{TORCH_CPU_INDEX}/filelock/"}
PLATFORMS = {"cpu": (PYPI, TORCH_CPU_INDEX), "cuda": (PYPI,)}
PYTHONS = ("3.11", "3.12")
# The benchmarking extra (the published implementation, for side-by-side timing) is outside the
# pinned sets; everything else a user or CI installs is inside them.
UNPINNED_EXTRAS = {"bench"}
# pip variables that are about the transport, not about where packages come from.
PIP_TRANSPORT_VARS = {"PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES", "PIP_PROXY"}


def _pins(*files: Path) -> dict[str, str]:
    """name -> pinned version over the constraint files, later files refining earlier ones."""
    pins: dict[str, str] = {}
    for path in files:
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            req = Requirement(line)
            specs = list(req.specifier)
            assert len(specs) == 1 and specs[0].operator == "==", (
                f"{path}:{number}: {line!r} is not an exact pin (name==version)")
            pins[canonicalize_name(req.name)] = specs[0].version
    return pins


def _requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra, deps in project.get("optional-dependencies", {}).items():
        if extra not in UNPINNED_EXTRAS:
            reqs.extend(deps)
    return reqs


def _unreachable(url: str) -> str | None:
    """Why `url`'s host cannot be reached, or None when it answers (any HTTP status)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=20):
            return None
    except urllib.error.HTTPError:
        return None  # the host answered; pip will say what is wrong, if anything
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLError):
            raise  # reachable, but TLS failed: a real problem, not a missing network
        if isinstance(reason, (socket.gaierror, ConnectionError, TimeoutError)):
            return f"{type(reason).__name__}: {reason}"
        if isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"{type(reason).__name__}: {reason}"
        raise
    except TimeoutError as exc:
        return f"TimeoutError: {exc}"


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in PIP_TRANSPORT_VARS}
    env["PIP_CONFIG_FILE"] = os.devnull  # no pip.conf: no local find-links, mirrors or caps
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def test_requires_python_admits_every_checked_version():
    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    assert all(spec.contains(v + ".0") for v in PYTHONS), f"requires-python {spec} vs checked {PYTHONS}"
    assert not spec.contains("3.13.0"), "3.13 is not checked here: add it to PYTHONS first"


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("flavour", sorted(PLATFORMS))
def test_pinned_install_resolves(flavour, python, tmp_path):
    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip(f"the pinned sets are for Linux x86_64 (wheel tags, CUDA markers); this is "
                    f"{sys.platform} {platform.machine()}")
    indexes = PLATFORMS[flavour]
    for index in indexes:
        why = _unreachable(PROBES[index])
        if why:
            pytest.skip(f"{index} cannot be reached from this machine ({why}); the {flavour} "
                        f"install for Python {python} was not checked")

    files = (ROOT / "constraints.txt", ROOT / "constraints" / f"{flavour}.txt")
    report = tmp_path / "report.json"
    extra_indexes = [a for index in indexes[1:] for a in ("--extra-index-url", index)]
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
           "--report", str(report), "--only-binary=:all:", "--python-version", python,
           "--index-url", indexes[0], *extra_indexes,
           *[a for f in files for a in ("-c", str(f))], *_requirements()]
    proc = subprocess.run(cmd, cwd=ROOT, env=_pip_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (
        f"pip could not resolve the {flavour} set for Python {python}:\n{proc.stdout}\n{proc.stderr}")

    installed = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
                 for item in json.loads(report.read_text())["install"]}
    pins = _pins(*files)
    unpinned = sorted(name for name in installed if name not in pins)
    assert not unpinned, (f"{flavour}, Python {python}: resolved but not pinned, add them to "
                          f"{files[-1].relative_to(ROOT)} or constraints.txt: "
                          + ", ".join(f"{n}=={installed[n]}" for n in unpinned))
    moved = {n: (installed[n], pins[n]) for n in installed if installed[n] != pins[n]}
    assert not moved, f"{flavour}, Python {python}: resolved (got, pinned): {moved}"

    if flavour == "cuda":
        assert installed["torch"] == "2.13.0"
        assert {"nvidia-cudnn-cu13", "nvidia-nccl-cu13", "triton"} <= set(installed)
    else:
        assert installed["torch"] == "2.13.0+cpu"
        assert not any(n.startswith(("nvidia-", "cuda-")) or n == "triton" for n in installed)
