"""Reuse keys: short stable hashes of what a step's output was made from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

def input_key(payload: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-able description of a step's inputs."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (annotation files: what the prepared rows derive from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def images_listing_digest(root: Path) -> str:
    """sha256 over (relative path, size, mtime) of every file under `root`: cheap change check."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        h.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()
