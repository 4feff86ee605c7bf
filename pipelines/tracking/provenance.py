"""Provenance tags: what a run needs recorded to be repeated (git revision, versions, host, time)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from shg_io.clock import utc_iso


def provenance(repo_root: Path | None = None) -> dict[str, str]:
    """Tags that let a run be repeated: git revision (and dirty flag), versions, host, time."""
    tags: dict[str, str] = {"shg.started_utc": utc_iso(), "shg.host": os.uname().nodename}
    root = repo_root or Path(__file__).resolve().parents[2]
    tags.update(git_revision(root))
    for name in ("shg", "torch", "ray", "mlflow", "numpy", "pyarrow", "albumentations", "opencv-python-headless"):
        try:
            tags[f"version.{name}"] = version(name)
        except PackageNotFoundError:
            tags[f"version.{name}"] = "not installed"

    tags["version.python"] = platform.python_version()
    return tags


def git_revision(root: Path) -> dict[str, str]:
    """`git.commit` and `git.dirty` of the checkout at `root`, or `git.commit=unknown`.

    A Ray job's working_dir carries no .git; the submitter records `SHG_GIT_COMMIT` for it.
    """
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        # Only this checkout counts, not a repository that happens to enclose a job's copy of it.
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root.resolve():
            raise OSError("not the root of a git checkout")
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        return {"git.commit": commit, "git.dirty": str(dirty).lower()}
    except (OSError, subprocess.SubprocessError):
        commit = os.environ.get("SHG_GIT_COMMIT", "unknown")
        return {"git.commit": commit, "git.dirty": os.environ.get("SHG_GIT_DIRTY", "unknown")}

