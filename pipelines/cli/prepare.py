"""`shg prepare`: annotations + images -> parquet crops and heatmap targets (Ray Data job).

One name per setting: every option is a `PrepareConfig` field, the key `shg run` takes as
`prepare.<field>=VALUE`; `shg prepare` takes those `prepare.<field>=VALUE` arguments as well
(`--jpeg-quality 80` and `prepare.jpeg_quality=80` are the same setting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dataprep.prepare import PrepareConfig, PrepareConfigError, check_config
from pipelines.cli import exits
from pipelines.config.overrides import ConfigError, apply_overrides, parse_overrides

SECTION = "prepare"  # the section of `shg run`'s config these settings are (`RunConfig.prepare`)
REQUIRED = ("annotations", "images", "out")


@dataclass(frozen=True)
class PrepareSettings:
    """The one-section tree the override engine applies `prepare.*` keys to."""

    prepare: PrepareConfig = field(default_factory=PrepareConfig)


def register(app: typer.Typer) -> None:
    """Adds this module's commands to `app`."""
    app.command("prepare")(prepare)


def prepare_config(options: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> PrepareConfig:
    """The `PrepareConfig` of one `shg prepare`: its defaults, the options given (`options`:
    field name -> value, None = not given), then the `prepare.<field>=VALUE` arguments.

    Raises:
        ConfigError: an unknown key, a bad value, a setting given both ways, or a required one missing.
    """
    given = {f"{SECTION}.{name}": str(value) if isinstance(value, Path) else value
             for name, value in options.items() if value is not None}
    extra = parse_overrides(list(overrides))
    twice = sorted(set(given) & set(extra))
    if twice:
        raise ConfigError(f"{', '.join(twice)} given both as an option and as KEY=VALUE; give each once")
    cfg = apply_overrides(PrepareSettings(), {**given, **extra}, source="shg prepare").prepare
    missing = [name for name in REQUIRED if not getattr(cfg, name)]
    if missing:
        raise ConfigError("missing " + ", ".join(f"--{n.replace('_', '-')} (or {SECTION}.{n}=...)" for n in missing))
    return cfg


def prepare(
    overrides: Annotated[Optional[list[str]], typer.Argument(
        metavar="[prepare.KEY=VALUE]...",
        help="The same settings as the options, by the keys `shg run` takes, e.g. prepare.jpeg_quality=90.")] = None,
    annotations: Annotated[Optional[Path], typer.Option(help="MPII annotation file (mpii_json, h5, hrnet_json or mat). Required.")] = None,
    images: Annotated[Optional[str], typer.Option(help="Image root, a folder or an object store URI (s3://bucket/mpii/images, read by the prepare tasks on whichever node runs them); the annotation's image paths are relative to it. Required.")] = None,
    out: Annotated[Optional[str], typer.Option(help="Output folder or object store URI (s3://bucket/prefix): train/, val/, quarantine/ parquet and manifest.json. Required.")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray address ('auto', HOST:PORT, ray://...); default: a local cluster.")] = None,
    format: Annotated[Optional[str], typer.Option(help="Annotation form; default: detected from the file.")] = None,
    split: Annotated[Optional[str], typer.Option(help="train or val, for a form without a split (unset: such forms go to val).")] = None,
    head_sizes: Annotated[Optional[Path], typer.Option(help="Official validation head sizes (detections_our_format.mat or valid.h5), used for the people they hold.")] = None,
    jpeg_quality: Annotated[Optional[int], typer.Option(help="JPEG quality of the stored crops (default 95).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="People per map_batches call (default 32).")] = None,
    block_rows: Annotated[Optional[int], typer.Option(help="People per input block, one Ray task (default 128).")] = None,
    rows_per_file: Annotated[Optional[int], typer.Option(help="Rows per output parquet file (default 4096).")] = None,
    progress_every: Annotated[Optional[int], typer.Option(help="Print a progress line every this many people (default 1000).")] = None,
    max_image_pixels: Annotated[Optional[int], typer.Option(help="Quarantine an image whose header declares more pixels, checked before decoding (default 40000000).")] = None,
    max_image_bytes: Annotated[Optional[int], typer.Option(help="Quarantine an image file larger than this (default 134217728).")] = None,
    max_decode_s: Annotated[Optional[float], typer.Option(help="Quarantine an image whose decode takes longer than this many seconds, a decoder that hangs (default 30).")] = None,
    max_annotation_bytes: Annotated[Optional[int], typer.Option(help="Refuse an annotation file that expands past this many bytes, gzip, HDF5, .mat included (default 2147483648).")] = None,
) -> None:
    """Crop every person, render the targets, quarantine bad records; print the manifest summary."""
    options = {k: v for k, v in locals().items() if k != "overrides"}
    try:
        cfg = prepare_config(options, overrides or ())
        check_config(cfg)  # before Ray starts: a typo should not cost a cluster start-up
    except (ConfigError, PrepareConfigError) as exc:
        exits.fail(str(exc), exits.USAGE)

    # the orchestration layer imports ray: loaded when the command runs, not for --help
    from pipelines.orchestration.standalone import PREPARE_REFUSALS, prepare_dataset

    try:
        manifest = prepare_dataset(cfg, log=lambda line: typer.echo(line, err=True))
    except PREPARE_REFUSALS as exc:
        exits.fail_on(exc)
    typer.echo(
        f"rows_in={manifest.rows_in} train={manifest.rows['train']} val={manifest.rows['val']} "
        f"quarantined={manifest.quarantined} fingerprint={manifest.fingerprint}"
    )
    typer.echo(f"manifest: {cfg.out.rstrip('/')}/manifest.json")
