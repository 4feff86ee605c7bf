"""Writes `prepare_batch` output into `train/`, `val/` and `quarantine/` parquet files.

Runs inside the Ray tasks of `shg prepare` (`write_batch`: one batch of rows in, its files
written, a small per-row summary out), so the prepared rows never travel to the driver; the
driver only adds up the summaries (`PrepareTally`: counts and the per-row digests of the
fingerprint). Files go through `shg_io.storage`, so the folder may be local or an object store.

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
from shg_io.storage import Location, location

QUARANTINE = "quarantine"
DESTINATION = "destination"

# What a write task hands back to the driver per row: ~100 bytes, never the crop or the targets.
SUMMARY_SCHEMA = pa.schema([
    pa.field(PERSON_ID, pa.string()),
    pa.field(DIGEST, pa.binary(32)),
    pa.field(DESTINATION, pa.string()),  # train | val | quarantine
    pa.field(REASON, pa.string()),  # null unless quarantined
])


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
    """Parquet files `{prefix}-00000.parquet`, ... in one folder, a new file every `rows_per_file`."""

    def __init__(self, folder: Location, schema: pa.Schema, rows_per_file: int, compression, dictionary,
                 prefix: str = "part"):
        self.folder, self.schema, self.rows_per_file = folder, schema, rows_per_file
        self.compression, self.dictionary, self.prefix = compression, dictionary, prefix
        self.files: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        while len(table):
            if self._writer is None:
                path = (self.folder / f"{self.prefix}-{len(self.files):05d}.parquet").path
                self._writer = pq.ParquetWriter(
                    path, self.schema, compression=self.compression, use_dictionary=self.dictionary,
                    filesystem=self.folder.filesystem,
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

    def close(self, empty_file: bool = True) -> None:
        """Closes the open file; with `empty_file`, an empty destination still gets one file, for
        its schema."""
        self._close_file()
        if not self.files and empty_file:
            path = (self.folder / f"{self.prefix}-00000.parquet").path
            pq.write_table(
                self.schema.empty_table(), path, compression=self.compression, use_dictionary=self.dictionary,
                filesystem=self.folder.filesystem,
            )
            self.files.append(path)


class PreparedDatasetWriter:
    """Writes `WORK_SCHEMA` batches under `root` and keeps counts and digests.

    Args:
        root: the output folder (a path or a `shg_io.storage` URI); `train/`, `val/`,
            `quarantine/` are created in it.
        rows_per_file: rows per parquet file (the unit of read parallelism for training).
        row_group_rows: rows buffered per destination before one parquet row group is written.
        prefix: file names are `{prefix}-00000.parquet`, ...; writers sharing a folder need
            different prefixes.
    """

    def __init__(self, root: Path | str | Location, rows_per_file: int = 4096, row_group_rows: int = 256,
                 prefix: str = "part"):
        root = location(root)
        self.row_group_rows = row_group_rows
        zstd_except_jpeg = {_leaf(f): ("none" if f.name == CROP_JPEG else "zstd") for f in PREPARED_SCHEMA}
        self._parts: dict[str, _PartWriter] = {}
        for name, schema, compression, dictionary in [
            *((split, PREPARED_SCHEMA, zstd_except_jpeg, [SPLIT, IMAGE]) for split in SPLITS),
            (QUARANTINE, QUARANTINE_SCHEMA, "zstd", True),
        ]:
            if root.is_local:  # an object store has no folders to make
                (root / name).mkdir()
            self._parts[name] = _PartWriter(root / name, schema, rows_per_file, compression, dictionary, prefix)
        self._buffers: dict[str, list[pa.Table]] = {name: [] for name in self._parts}
        self._summaries: list[pa.Table] = []  # the totals are PrepareTally's, from summary()

    def write(self, batch: pa.Table) -> None:
        """Routes each row of a `WORK_SCHEMA` batch to its split or to the quarantine."""
        batch = batch.cast(WORK_SCHEMA)
        rejected = pc.is_valid(batch.column(REASON))
        destination = pc.if_else(rejected, pa.scalar(QUARANTINE), batch.column(SPLIT))
        self._summaries.append(pa.Table.from_arrays(
            [batch.column(PERSON_ID), batch.column(DIGEST), destination, batch.column(REASON)],
            schema=SUMMARY_SCHEMA))
        bad = batch.filter(rejected)
        if len(bad):
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

    def close(self, empty_files: bool | tuple[str, ...] = True) -> dict[str, int]:
        """Flushes and closes every file; returns rows written per destination. With
        `empty_files` (True, or the destinations it applies to), an empty destination gets one
        file with no rows (its schema)."""
        for name in self._parts:
            self._flush(name)
            self._parts[name].close(empty_files is True or (empty_files is not False and name in empty_files))
        return {name: part.rows for name, part in self._parts.items()}

    def files(self, name: str) -> list[str]:
        """The paths (on the writer's file system) of the files written to one destination."""
        return list(self._parts[name].files)

    def summary(self) -> pa.Table:
        """`SUMMARY_SCHEMA`: one row per row written (person, digest, where it went, reason)."""
        return pa.concat_tables([SUMMARY_SCHEMA.empty_table(), *self._summaries])


def write_batch(batch: pa.Table, out: str | Location, generation: str, rows_per_file: int) -> pa.Table:
    """The Ray Data write step: writes one `WORK_SCHEMA` batch under `out` (a path or URI) and
    returns its `SUMMARY_SCHEMA` rows.

    Files are named `part-{generation}-{key}-NNNNN.parquet`, `key` a hash of the batch's person
    ids, so tasks never collide and one run's files can be told from another's.
    """
    key = hashlib.sha256("\0".join(batch.column(PERSON_ID).to_pylist()).encode()).hexdigest()[:16]
    writer = PreparedDatasetWriter(out, rows_per_file=rows_per_file, prefix=f"part-{generation}-{key}")
    for start in range(0, len(batch), writer.row_group_rows):  # routing copies one row group at a time
        writer.write(batch.slice(start, writer.row_group_rows))
    writer.close(empty_files=False)
    return writer.summary()


class PrepareTally:
    """The driver's running totals over the write tasks' summaries: digests for the fingerprint
    (~100 bytes a row), quarantine reasons, and rows per destination."""

    def __init__(self) -> None:
        self.digests: list[tuple[str, bytes]] = []
        self.by_reason: Counter[str] = Counter()
        self.rows: Counter[str] = Counter()

    @property
    def rows_seen(self) -> int:
        return len(self.digests)

    @property
    def quarantined(self) -> int:
        return sum(self.by_reason.values())

    def add(self, summary: pa.Table) -> None:
        self.digests.extend(
            zip(summary.column(PERSON_ID).to_pylist(), summary.column(DIGEST).to_pylist(), strict=True)
        )
        self.rows.update(summary.column(DESTINATION).to_pylist())
        self.by_reason.update(r for r in summary.column(REASON).to_pylist() if r is not None)
