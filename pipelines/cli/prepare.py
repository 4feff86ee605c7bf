"""`shg prepare`: annotations + images -> parquet crops and heatmap targets (Ray Data job)."""

from __future__ import annotations

from pathlib import Path

import typer

from dataprep.prepare import PrepareConfig, PrepareConfigError, check_config


def register(app: typer.Typer) -> None:
    """Adds this module's commands to `app`."""
    app.command("prepare")(prepare)


def prepare(
    annotations: Path = typer.Option(..., help="MPII annotation file (mpii_json, h5, hrnet_json or mat)."),
    images: str = typer.Option(..., help="Image root, a folder or an object store URI (s3://bucket/mpii/images, read by the prepare tasks on whichever node runs them); the annotation's image paths are relative to it."),
    out: str = typer.Option(..., help="Output folder or object store URI (s3://bucket/prefix): train/, val/, quarantine/ parquet and manifest.json."),
    address: str = typer.Option(None, help="Ray address ('auto', HOST:PORT, ray://...); default: a local cluster."),
    format: str = typer.Option(None, help="Annotation form; default: detected from the file."),
    split: str = typer.Option(None, help="train or val, for a form without a split (default val)."),
    head_sizes: Path = typer.Option(None, help="Official validation head sizes (detections_our_format.mat or valid.h5), used for the people they hold."),
    jpeg_quality: int = typer.Option(95, help="JPEG quality of the stored crops."),
    batch_size: int = typer.Option(32, help="People per map_batches call."),
    block_rows: int = typer.Option(128, help="People per input block (one Ray task)."),
    rows_per_file: int = typer.Option(4096, help="Rows per output parquet file."),
    progress_every: int = typer.Option(1000, help="Print a progress line every this many people."),
    max_image_pixels: int = typer.Option(
        40_000_000, help="Quarantine an image whose header declares more pixels (checked before decoding)."
    ),
    max_image_bytes: int = typer.Option(128 * 2**20, help="Quarantine an image file larger than this."),
    max_decode_s: float = typer.Option(
        30.0, help="Quarantine an image whose decode takes longer than this many seconds (a decoder that hangs)."
    ),
    max_annotation_bytes: int = typer.Option(
        2 * 2**30, help="Refuse an annotation file that expands past this many bytes (gzip, HDF5, .mat included)."
    ),
) -> None:
    """Crop every person, render the targets, quarantine bad records; print the manifest summary."""
    cfg = PrepareConfig(
        annotations=str(annotations),
        images=images,
        out=str(out),
        address=address,
        format=format,
        split=split,
        head_sizes=None if head_sizes is None else str(head_sizes),
        jpeg_quality=jpeg_quality,
        batch_size=batch_size,
        block_rows=block_rows,
        rows_per_file=rows_per_file,
        progress_every=progress_every,
        max_image_pixels=max_image_pixels,
        max_image_bytes=max_image_bytes,
        max_annotation_bytes=max_annotation_bytes,
        max_decode_s=max_decode_s,
    )
    try:
        check_config(cfg)  # before Ray starts: a typo should not cost a cluster start-up
    except PrepareConfigError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from exc

    # the orchestration layer imports ray: loaded when the command runs, not for --help
    from pipelines.orchestration.standalone import PREPARE_REFUSALS, prepare_dataset

    try:
        manifest = prepare_dataset(cfg, log=lambda line: typer.echo(line, err=True))
    except PREPARE_REFUSALS as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"rows_in={manifest.rows_in} train={manifest.rows['train']} val={manifest.rows['val']} "
        f"quarantined={manifest.quarantined} fingerprint={manifest.fingerprint}"
    )
    typer.echo(f"manifest: {out.rstrip('/')}/manifest.json")
