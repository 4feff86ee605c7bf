"""JSON files the pipeline writes: strict JSON (no NaN), written atomically, to a local path or
an object store URI (`shg_io.storage`).

A killed process never leaves a truncated file behind: locally the text goes to a temporary file
in the same folder, is flushed to disk, and replaces the target with one rename; on an object
store it is one PUT, visible whole or not at all.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from shg_io.storage import Location, location


def json_ready(value: Any) -> Any:
    """NaN/inf → None (strict JSON), numpy scalars and arrays → Python numbers and lists."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | Path | Location, value: Any) -> Location:
    """Writes `value` as indented strict JSON to `path` (a path or URI); returns where it went."""
    target = location(path)
    target.write_text_atomic(json.dumps(json_ready(value), indent=2, allow_nan=False) + "\n")
    return target


def read_json(path: str | Path | Location) -> Any:
    """The JSON value stored at `path` (a path or URI)."""
    return json.loads(location(path).read_text())
