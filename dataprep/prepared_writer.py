"""Streams `prepare_batch` output into `train/`, `val/` and `quarantine/` parquet files.

Runs on the driver while Ray Data streams batches to it, so memory stays bounded by one row group
per destination; it also counts rows and collects the per-row digests for the fingerprint.

Storage choices (measured with `benchmarks/prepare.py` on the real MPII images):
- `crop_jpeg` is already entropy-coded, so it is stored uncompressed (zstd would only cost CPU)
  and without a parquet dictionary (crops never repeat; only `split` and `image` get one);
- every other column is zstd-compressed. The uint8 heatmaps are 64 KiB raw per row but mostly
  zeros (each joint lights up a 7x7 window of its 64x64 map): zstd shrinks them ~100x to
  ~0.66 KB, ~2 % of a ~31 KB row whose ~30 KB are the q95 JPEG. float32 maps would be 4x larger
  raw and compress worse, while 1/255 steps (error <= 1/510) are far below the label noise.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataprep.prepare_batch import DIGEST, WORK_SCHEMA
from dataprep.schema import (
    CROP_JPEG,
    IMAGE,
    PERSON_ID,
    PREPARED_SCHEMA,
    QUARANTINE_SCHEMA,
    REASON,
    SPLIT,
    SPLITS,
)

QUARANTINE = "quarantine"


def fingerprint(pairs: list[tuple[str, bytes]]) -> str:
    """Content hash of a dataset from its `(person_id, row digest)` pairs, in any order."""
    h = hashlib.sha256()
    for person_id, digest in sorted(pairs):
        h.update(person_id.encode() + b"\0" + digest)
    return "sha256:" + h.hexdigest()


def _leaf(field: pa.Field) -> str:
    """The parquet column path of a field (what a per-column `compression` dict is keyed by)."""
    return f"{field.name}.list.element" if pa.types.is_fixed_size_list(field.type) else field.name


class _PartWriter:
    """Parquet files `part-00000.parquet`, ... in one folder, a new file every `rows_per_file`."""

    def __init__(self, folder: Path, schema: pa.Schema, rows_per_file: int, compression, dictionary):
        self.folder, self.schema, self.rows_per_file = folder, schema, rows_per_file
        self.compression, self.dictionary = compression, dictionary
        self.files: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        while len(table):
            if self._writer is None:
                path = self.folder / f"part-{len(self.files):05d}.parquet"
                self._writer = pq.ParquetWriter(
                    path, self.schema, compression=self.compression, use_dictionary=self.dictionary
                )
                self.files.append(path)
            take = min(len(table), self.rows_per_file - self._rows_in_file)
            self._writer.write_table(table.slice(0, take))
            table = table.slice(take)
            self._rows_in_file += take
            self.rows += take
            if self._rows_in_file >= self.rows_per_file:
                self._close_file()

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer, self._rows_in_file = None, 0

    def close(self) -> None:
        """Closes the open file; an empty destination still gets one file, for its schema."""
        self._close_file()
        if not self.files:
            path = self.folder / "part-00000.parquet"
            pq.write_table(
                self.schema.empty_table(), path, compression=self.compression, use_dictionary=self.dictionary
            )
            self.files.append(path)


class PreparedDatasetWriter:
    """Writes `WORK_SCHEMA` batches under `root` and keeps counts and digests.

    Args:
        root: the (temporary) output folder; `train/`, `val/`, `quarantine/` are created in it.
        rows_per_file: rows per parquet file (the unit of read parallelism for training).
        row_group_rows: rows buffered per destination before one parquet row group is written.
    """

    def __init__(self, root: Path, rows_per_file: int = 4096, row_group_rows: int = 256):
        self.row_group_rows = row_group_rows
        zstd_except_jpeg = {_leaf(f): ("none" if f.name == CROP_JPEG else "zstd") for f in PREPARED_SCHEMA}
        self._parts: dict[str, _PartWriter] = {}
        for name, schema, compression, dictionary in [
            *((split, PREPARED_SCHEMA, zstd_except_jpeg, [SPLIT, IMAGE]) for split in SPLITS),
            (QUARANTINE, QUARANTINE_SCHEMA, "zstd", True),
        ]:
            (root / name).mkdir(parents=True, exist_ok=True)
            self._parts[name] = _PartWriter(root / name, schema, rows_per_file, compression, dictionary)
        self._buffers: dict[str, list[pa.Table]] = {name: [] for name in self._parts}
        self.digests: list[tuple[str, bytes]] = []
        self.by_reason: Counter[str] = Counter()

    @property
    def rows_seen(self) -> int:
        return len(self.digests)

    @property
    def quarantined(self) -> int:
        return sum(self.by_reason.values())

    def write(self, batch: pa.Table) -> None:
        """Routes each row of a `WORK_SCHEMA` batch to its split or to the quarantine."""
        batch = batch.cast(WORK_SCHEMA)
        self.digests.extend(
            zip(batch.column(PERSON_ID).to_pylist(), batch.column(DIGEST).to_pylist(), strict=True)
        )
        rejected = pc.is_valid(batch.column(REASON))
        bad = batch.filter(rejected)
        if len(bad):
            self.by_reason.update(bad.column(REASON).to_pylist())
            self._add(QUARANTINE, bad.select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA))
        good = batch.filter(pc.invert(rejected))
        routed = 0
        for split in SPLITS:
            rows = good.filter(pc.equal(good.column(SPLIT), split))
            if len(rows):
                self._add(split, rows.select(PREPARED_SCHEMA.names).cast(PREPARED_SCHEMA))
                routed += len(rows)
        if routed != len(good):  # the loaders only make train/val; never drop a row silently
            others = set(good.column(SPLIT).to_pylist()) - set(SPLITS)
            raise ValueError(f"rows with split {sorted(others)}; a split must be one of {SPLITS}")

    def _add(self, name: str, table: pa.Table) -> None:
        buffer = self._buffers[name]
        buffer.append(table)
        if sum(len(t) for t in buffer) >= self.row_group_rows:
            self._flush(name)

    def _flush(self, name: str) -> None:
        if self._buffers[name]:
            self._parts[name].write(pa.concat_tables(self._buffers[name]).combine_chunks())
            self._buffers[name] = []

    def close(self) -> dict[str, int]:
        """Flushes and closes every file; returns rows written per destination."""
        for name in self._parts:
            self._flush(name)
            self._parts[name].close()
        return {name: part.rows for name, part in self._parts.items()}

    def files(self, name: str) -> list[Path]:
        return list(self._parts[name].files)
