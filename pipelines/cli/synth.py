"""`shg synth`: write the embedded synthetic MPII-format dataset (see `dataprep.synth`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dataprep.synth.config import SynthConfig
from pipelines.cli import exits


def register(app: typer.Typer) -> None:
    """Adds this module's commands to `app`."""
    app.command("synth")(synth)


def synth(
    out: Annotated[Path, typer.Option(help="Directory to write images/ and annotations.json into.")],
    people: Annotated[Optional[int], typer.Option(help="Annotated people in all (default 4000).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Root seed; same config + seed = same bytes (default 0).")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(help="Share of people (whole images) marked isValidation (default 0.12).")] = None,
    width_range: Annotated[Optional[tuple[int, int]], typer.Option(help="Image width range, px (default 320 480).")] = None,
    height_range: Annotated[Optional[tuple[int, int]], typer.Option(help="Image height range, px (default 320 420).")] = None,
    person_height_range: Annotated[Optional[tuple[float, float]], typer.Option(help="Standing person height range, px (default 150 300).")] = None,
    multi_person_prob: Annotated[Optional[float], typer.Option(help="Chance of 2+ people in an image (default 0.3).")] = None,
    max_people_per_image: Annotated[Optional[int], typer.Option(help="Most people in one image (default 3).")] = None,
    rotation_std_deg: Annotated[Optional[float], typer.Option(help="In-plane rotation spread, degrees (default 15).")] = None,
    back_view_prob: Annotated[Optional[float], typer.Option(help="Chance a person faces away (default 0.35).")] = None,
    yaw_std_deg: Annotated[Optional[float], typer.Option(help="Body turn spread around front/back view, degrees (default 35).")] = None,
    truncation_prob: Annotated[Optional[float], typer.Option(help="Chance a person is cut by the image border (default 0.12).")] = None,
    occluder_prob: Annotated[Optional[float], typer.Option(help="Chance of foreground objects over people (default 0.15).")] = None,
    max_clutter: Annotated[Optional[int], typer.Option(help="Most background shapes per image (default 12).")] = None,
    noise_std: Annotated[Optional[float], typer.Option(help="Largest pixel-noise sigma, 0-255 scale (default 6).")] = None,
    jpeg_quality: Annotated[Optional[int], typer.Option(help="JPEG quality (default 90).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Rendering processes (output does not depend on it) (default 2).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a synthetic dataset already in --out.")] = False,
) -> None:
    """Generate the synthetic MPII-format dataset: DIR/images/*.jpg + DIR/annotations.json."""
    given = {k: v for k, v in locals().items() if k not in ("out", "overwrite") and v is not None}
    from dataprep.synth.writer import generate  # loads OpenCV, which `shg --help` should not pay for

    try:
        cfg = SynthConfig(**given)
    except ValueError as err:
        exits.fail(str(err), exits.USAGE)
    try:
        summary = generate(cfg, out, overwrite=overwrite)
    except FileExistsError as err:
        exits.fail(str(err), exits.USAGE)
    typer.echo(
        f"wrote {summary['people']} people in {summary['images']} images "
        f"({summary['train_people']} train, {summary['val_people']} val in {summary['val_images']} images) "
        f"to {summary['out_dir']} in {summary['seconds']:.1f} s ({summary['images_per_s']:.1f} images/s)"
    )
    typer.echo(f"annotations: {summary['annotations']}  images: {Path(summary['out_dir']) / 'images'}")
