"""Reading annotation files without letting one file exhaust the reader.

- a size cap (`max_bytes`, `shg prepare --max-annotation-bytes`) on what a file may expand to:
  a plain file's size, a gzip stream's decompressed bytes, the declared size of an HDF5 file's
  datasets, a MATLAB file's elements after zlib (each checked before or while streaming, never
  by reading the whole expansion first);
- JSON integers longer than Python's int-str conversion limit (`sys.get_int_max_str_digits`,
  4,300 digits) and entries nested past what the parser's recursion allows are kept as an
  `UnreadableValue` in place of that value or entry: the entry that holds one is quarantined by
  its reader as malformed, the rest of the file is read.
"""

from __future__ import annotations

import gzip
import json
import re
import struct
import sys
import zlib
from pathlib import Path

from dataprep.formats.common import AnnotationFormatError

# Imported where used: h5py (only HDF5 annotation files need it)

DEFAULT_MAX_ANNOTATION_BYTES = 2 * 2**30  # the MPII files are tens of MB; 2 GiB leaves room
SETTING = "--max-annotation-bytes (PrepareConfig.max_annotation_bytes)"
MAX_ENTRY_DEPTH = 64  # an MPII entry nests 3 deep; past this an entry is refused, not parsed
_CHUNK = 1 << 20


class UnreadableValue:
    """Stands for a JSON value (a number or a whole entry) that was parsed but cannot be used;
    its use as a number raises ValueError with `what`, and the JSON readers refuse an entry that
    is one, so the per-entry error handling quarantines that entry with this reason."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __float__(self) -> float:
        raise ValueError(self.what)

    __int__ = __index__ = __float__

    def __repr__(self) -> str:
        return f"<unreadable: {self.what}>"


def too_large(path: str | Path, what: str, size: int, max_bytes: int) -> AnnotationFormatError:
    return AnnotationFormatError(
        f"{path}: {what} {size:,} bytes, over the annotation size cap of {max_bytes:,} bytes; "
        f"raise {SETTING} if the file is genuine")


def _bounded_int(digits: str) -> int | UnreadableValue:
    limit = sys.get_int_max_str_digits()
    count = len(digits.lstrip("-"))
    if limit and count > limit:
        return UnreadableValue(f"an integer of {count:,} digits, over Python's {limit:,}-digit "
                               "int-str conversion limit")
    return int(digits)


def read_capped(path: str | Path, *, gz: bool, max_bytes: int) -> bytes:
    """The file's bytes (decompressed when `gz`), refused past `max_bytes` while reading."""
    path = Path(path)
    if not gz and path.stat().st_size > max_bytes:
        raise too_large(path, "the file has", path.stat().st_size, max_bytes)
    chunks, total = [], 0
    with (gzip.open if gz else open)(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise too_large(path, "the gzip stream expands to more than" if gz else "the file has",
                                total, max_bytes)
            chunks.append(chunk)
    return b"".join(chunks)


def parse_json(text: str, path: str | Path) -> object:
    """Parsed JSON; over-long integers become `UnreadableValue`s; when nesting goes past the
    parser's recursion limit, the entry list is parsed entry by entry and each entry nested
    deeper than `MAX_ENTRY_DEPTH` becomes an `UnreadableValue` (see the module docstring)."""
    try:
        return json.loads(text, parse_int=_bounded_int)
    except RecursionError:
        return _entries_one_by_one(text, path)


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')
_ROOT_FORM = re.compile(r'\s*\{\s*"root"\s*:\s*\[')


def _entries_one_by_one(text: str, path: str | Path) -> object:
    """A list of entries (or {"root": [...]}) split at its top-level commas without recursion."""
    root = _ROOT_FORM.match(text)
    start = root.end() if root else len(text) - len(text.lstrip()) + 1
    if not root and not text.lstrip().startswith("["):
        raise AnnotationFormatError(f"{path}: JSON nested deeper than the parser allows, and not a list of "
                                    "entries (nor {'root': [...]}) that could be read entry by entry")
    entries: list[object] = []
    depth, deepest, entry_start = 0, 0, start
    for token in _TOKEN.finditer(text, start):
        mark = token.group()
        if mark in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif mark in "]}" and depth:
            depth -= 1
        elif mark in ",]" and depth == 0:
            piece = text[entry_start:token.start()]
            if piece.strip():
                entries.append(_entry(piece, deepest, path, len(entries)))
            entry_start, deepest = token.end(), 0
            if mark == "]":
                return {"root": entries} if root else entries
    raise AnnotationFormatError(f"{path}: not valid JSON (the entry list never ends)")


def _entry(piece: str, depth: int, path: str | Path, row: int) -> object:
    if depth > MAX_ENTRY_DEPTH:
        return UnreadableValue(f"nested {depth:,} levels deep, past the {MAX_ENTRY_DEPTH} an entry may have")
    try:
        return json.loads(piece, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise AnnotationFormatError(f"{path}: not valid JSON in entry {row} ({exc})") from exc


def check_h5_size(f, path: str | Path, max_bytes: int) -> None:
    """Refuses an HDF5 file whose datasets declare more than `max_bytes` in all (checked from
    the metadata, before anything is read: a compressed dataset can declare terabytes)."""
    import h5py

    total = 0

    def add(_name, item):
        nonlocal total
        if isinstance(item, h5py.Dataset):
            total += int(item.size) * int(item.dtype.itemsize)

    f.visititems(add)
    if total > max_bytes:
        raise too_large(path, "its datasets declare", total, max_bytes)


def check_mat_size(path: str | Path, max_bytes: int) -> None:
    """Refuses a MATLAB v5 file whose elements take more than `max_bytes` once decompressed,
    counted while streaming through each zlib-compressed element (scipy would expand it whole)."""
    path = Path(path)
    with open(path, "rb") as f:
        header = f.read(128)
        order = "<" if header[126:128] == b"IM" else ">"
        total = 0
        while len(tag := f.read(8)) == 8:
            kind, size = struct.unpack(order + "II", tag)
            if kind != 15:  # miCOMPRESSED
                total += size
                f.seek(size + (-size % 8), 1)
            else:
                inflate, left = zlib.decompressobj(), size
                while left:
                    chunk = f.read(min(_CHUNK, left))
                    if not chunk:
                        break
                    left -= len(chunk)
                    try:
                        total += len(inflate.decompress(chunk, max_bytes + 1 - total))
                        while inflate.unconsumed_tail and total <= max_bytes:
                            total += len(inflate.decompress(inflate.unconsumed_tail, max_bytes + 1 - total))
                    except zlib.error:
                        return  # a corrupt element: scipy's reader says so, naming the file
                    if total > max_bytes:
                        break
            if total > max_bytes:
                raise too_large(path, "its elements expand to more than", total, max_bytes)
