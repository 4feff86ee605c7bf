"""`shg prepare`: annotations + images -> parquet crops and targets, as one Ray Data job.

Flow (`run_prepare`):
1. Check the config before any work (`PrepareConfigError` names the problem and the fix).
2. Read the annotations on the driver into `PersonRecord`s (cheap), reject on the driver what
   needs no image (bad path, non-finite numbers, invalid record, duplicate id).
3. A Ray dataset of plain record columns, in blocks, sorted by image so people of one image
   share a decode; `map_batches(prepare_batch)` decodes, crops, renders targets and quarantines
   missing/corrupt images and boxes outside the image, in a task pool as wide as the cluster.
4. A second `map_batches(write_batch)` writes the rows to parquet from the Ray tasks
   (`dataprep.prepared_writer`); the driver only receives a ~100-byte summary per row (person
   id, row digest, destination, reason), so its memory does not grow with the crops. OUT may be
   a local path or an object store URI (`shg_io.storage`). Locally the files go to a
   temporary folder; the driver writes `manifest.json`, fsyncs it all and moves the folder into
   place with a rename, so a failed run leaves any earlier output untouched, and the temporary
   folders of a run that was killed are removed by the next one (`shg_io.atomic`). On an
   object store the files (named by a fresh generation) go straight under OUT and the manifest,
   which names them, is written last: it is the commit (see `run_prepare`).

Hostile input: one bad record never ends the job. Malformed annotation entries, bad names and
paths, numbers that are not finite as float32, unreadable, oversized (by header, before any
decode) or corrupt images each become one quarantined row with a reason from
`dataprep.quarantine.REASONS`, and `rows_in = rows + quarantined` always holds.

The fingerprint is a SHA-256 over the sorted `(person_id, row digest)` pairs, where a row digest
covers every stored column (quarantined rows: their reason), so it does not depend on block
order or parallelism, and same inputs give the same fingerprint and byte-identical targets.

The steps live in this package's modules: `config` (PrepareConfig and the checks before any
work), `screening` (annotations read and screened on the driver), `ray_job` (the Ray Data
job, on the cluster the caller connected to: dataprep never starts Ray), `manifest`
(`PreparedManifest`, what `run_prepare` returns and commits), `commit` (the rename or the
manifest that makes a dataset visible) and `run` (`run_prepare`, which composes them).
"""

from dataprep.prepare.config import (
    ANNOTATION_FORMATS,
    MANIFEST,
    PrepareConfig,
    PrepareConfigError,
    check_config,
)
from dataprep.prepare.manifest import ManifestError, PreparedManifest
from dataprep.prepare.ray_job import RayNotConnected
from dataprep.prepare.run import run_prepare
from dataprep.prepare.screening import load_head_sizes, load_records, records_table, screen_records

__all__ = [
    "ANNOTATION_FORMATS",
    "MANIFEST",
    "ManifestError",
    "PrepareConfig",
    "PrepareConfigError",
    "PreparedManifest",
    "RayNotConnected",
    "check_config",
    "load_head_sizes",
    "load_records",
    "records_table",
    "run_prepare",
    "screen_records",
]
