"""The synthetic MPII-format dataset: determinism, counts, labels, MPII JSON parity, loader, CLI."""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dataprep.joints import JOINT_INDEX as J
from dataprep.synth import SynthConfig, generate
from dataprep.synth.writer import ANNOTATIONS, EMPTY_MATRIX, plan_images
from dataprep.synth.scene import OCCLUDER_LABEL, _annotate, render_scene

SMALL = SynthConfig(people=60, seed=7, workers=1)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> tuple[Path, list[dict], dict]:
    out = tmp_path_factory.mktemp("synth") / "ds"
    summary = generate(SMALL, out)
    return out, json.loads((out / ANNOTATIONS).read_text()), summary


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_the_workers(small_dataset, tmp_path):
    out, _, _ = small_dataset
    generate(replace(SMALL, workers=2), tmp_path / "again")  # two spawned processes
    assert _files(out) == _files(tmp_path / "again")


def test_another_seed_gives_another_dataset(small_dataset, tmp_path):
    out, entries, _ = small_dataset
    generate(replace(SMALL, seed=8), tmp_path / "other")
    other = json.loads((tmp_path / "other" / ANNOTATIONS).read_text())
    assert other != entries
    assert (tmp_path / "other/images/000000001.jpg").read_bytes() != (out / "images/000000001.jpg").read_bytes()


def test_counts_and_split(small_dataset):
    out, entries, summary = small_dataset
    assert len(entries) == summary["people"] == SMALL.people
    images = {e["img_paths"] for e in entries}
    assert len(images) == summary["images"] == len(list((out / "images").glob("*.jpg")))
    per_image_split = {}
    for e in entries:  # whole images go to one split
        assert per_image_split.setdefault(e["img_paths"], e["isValidation"]) == e["isValidation"]
    val = sum(e["isValidation"] for e in entries)
    target = round(SMALL.val_fraction * SMALL.people)
    assert val == summary["val_people"] and target <= val < target + SMALL.max_people_per_image
    assert summary["train_people"] + summary["val_people"] == SMALL.people
    manifest = json.loads((out / "synth_manifest.json").read_text())
    assert manifest["config"] == SMALL.to_dict() and manifest["people"] == SMALL.people


@pytest.mark.parametrize("people,val_fraction", [(1, 0.12), (500, 0.15), (999, 0.0)])
def test_plan_sums_to_the_people_asked_for(people, val_fraction):
    counts, is_val, seeds = plan_images(replace(SMALL, people=people, val_fraction=val_fraction))
    assert sum(counts) == people and len(counts) == len(is_val) == len(seeds)
    assert max(counts) <= SMALL.max_people_per_image and min(counts) >= 1
    val = sum(c for c, v in zip(counts, is_val) if v)
    assert abs(val - val_fraction * people) < SMALL.max_people_per_image
    if people == 500:  # about 30 % of images hold 2-3 people
        assert 0.15 < np.mean(np.array(counts) > 1) < 0.45


def test_entries_cross_reference_each_other(small_dataset):
    _, entries, _ = small_dataset
    by_image: dict[str, list[dict]] = {}
    for e in entries:
        by_image.setdefault(e["img_paths"], []).append(e)
    for name, people in by_image.items():
        assert sorted(e["people_index"] for e in people) == list(range(1, len(people) + 1))
        assert len({e["annolist_index"] for e in people}) == 1
        for e in people:
            assert e["numOtherPeople"] == len(people) - 1
            others = [o for o in people if o is not e]
            if not others:
                assert e["joint_others"] == e["objpos_other"] == e["scale_provided_other"] == EMPTY_MATRIX
            elif len(others) == 1:
                assert e["joint_others"] == others[0]["joint_self"]
                assert e["objpos_other"] == others[0]["objpos"]
            else:
                assert e["joint_others"] == [o["joint_self"] for o in others]
                assert e["scale_provided_other"] == [o["scale_provided"] for o in others]


def test_labelled_exactly_when_inside_the_image_and_mpii_style_rows(small_dataset):
    _, entries, _ = small_dataset
    for e in entries:
        w, h = e["img_width"], e["img_height"]
        for x, y, v in e["joint_self"]:
            if (x, y) == (0.0, 0.0):
                assert v == 0.0  # unlabelled rows are [0, 0, 0] like MPII
            else:
                assert 1.0 <= x <= w and 1.0 <= y <= h and v in (0.0, 1.0)
    cfg = replace(SMALL, truncation_prob=1.0)  # every person pushed across a border
    cut = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        pixels, people = render_scene(cfg, rng, 2)
        h, w = pixels.shape[:2]
        for p in people:
            inside = (p.joints >= 0).all(1) & (p.joints[:, 0] <= w - 1) & (p.joints[:, 1] <= h - 1)
            assert (p.labelled == inside).all()
            assert not (p.visible & ~p.labelled).any()
            cut += int((~inside).any())
    assert cut >= 8  # truncation really cuts people


def test_head_box_contains_the_head_joints_and_sizes_like_mpii(small_dataset):
    _, entries, _ = small_dataset
    ratios = []
    for e in entries:
        x1, y1, x2, y2 = e["head_box"]
        assert x1 < x2 and y1 < y2
        neck, top = e["joint_self"][J["upper_neck"]], e["joint_self"][J["head_top"]]
        for x, y, _ in (neck, top):
            if (x, y) != (0.0, 0.0):
                assert x1 <= x <= x2 and y1 <= y <= y2
        if neck[:2] != [0.0, 0.0] and top[:2] != [0.0, 0.0]:
            segment = np.hypot(top[0] - neck[0], top[1] - neck[1])
            ratios.append(0.6 * np.hypot(x2 - x1, y2 - y1) / segment)
    # MPII (valid.h5): head size / ||head_top - upper_neck|| = 0.75 for upright heads; tilted or
    # nodding heads have larger axis-aligned boxes or shorter projected segments
    assert 0.72 <= np.median(ratios) <= 0.85


def test_objpos_and_scale_follow_the_mpii_convention(small_dataset):
    """After the loader's adjustment (y += 15 s, s *= 1.25) the 200 s box holds the person."""
    _, entries, _ = small_dataset
    inside = []
    for e in entries:
        s = e["scale_provided"] * 1.25
        cx, cy = e["objpos"][0], e["objpos"][1] + 15 * e["scale_provided"]
        for x, y, _ in e["joint_self"]:
            if (x, y) != (0.0, 0.0):
                inside.append(abs(x - cx) <= 100 * s and abs(y - cy) <= 100 * s)
        assert 150 / 200 <= e["scale_provided"] <= 300 / 200
    assert np.mean(inside) > 0.98


def test_visibility_reads_what_is_on_top():
    rng = np.random.default_rng(3)
    pixels, people = render_scene(replace(SMALL, occluder_prob=0.0), rng, 1)
    figure_joints = people[0]
    assert figure_joints.visible[figure_joints.labelled].mean() > 0.6
    # the same person under a wall: nothing of it is visible, everything inside stays labelled
    from dataprep.synth.person import make_figure, moved

    figure = moved(make_figure(np.random.default_rng(0), 200.0, 0.0, 0.0, 0.0), (150, 150))
    wall = np.full((300, 300), OCCLUDER_LABEL, np.uint16)
    hidden = _annotate(figure, wall, slot=0)
    assert hidden.labelled.all() and not hidden.visible.any()


def _structure(value):
    """The type skeleton of a JSON value: list lengths and element types, dict keys."""
    if isinstance(value, list):
        return [len(value), _structure(value[0]) if value else None]
    if isinstance(value, dict):
        return {k: _structure(v) for k, v in value.items()}
    return type(value).__name__


def test_same_keys_and_value_conventions_as_the_real_mpii_json(small_dataset, mpii_dir):
    _, entries, _ = small_dataset
    with gzip.open(mpii_dir / "mpii_annotations.json.gz", "rt") as f:
        real = json.load(f)
    real_keys = set(real[0])
    assert all(set(e) == real_keys | {"head_box"} for e in entries)
    for others in (0.0, 1.0, 2.0):  # floats (MATLAB doubles), nesting by number of others
        ours = next(e for e in entries if e["numOtherPeople"] == others)
        theirs = next(r for r in real if r["numOtherPeople"] == others)
        for key in real_keys:
            assert _structure(ours[key]) == _structure(theirs[key]), (others, key)
    assert next(r for r in real if r["numOtherPeople"] == 0)["joint_others"] == EMPTY_MATRIX
    assert {e["dataset"] for e in entries} == {"synthetic_mpii"}


def test_the_project_loader_reads_it(small_dataset):
    from dataprep.mpii import read_annotations

    out, entries, _ = small_dataset
    loaded = read_annotations(out / ANNOTATIONS)
    assert loaded.format == "mpii_json" and len(loaded.records) == len(entries)
    for record, e in zip(loaded.records, entries):
        raw = np.array(e["joint_self"])
        assert (record.labelled == (raw[:, 0] > 0)).all()
        np.testing.assert_allclose(record.joints[record.labelled], raw[record.labelled, :2] - 1.0)
        assert record.split == ("val" if e["isValidation"] else "train")
        assert record.head_size_source == "head_box"
        assert (out / "images" / record.image).is_file()
        assert record.scale == pytest.approx(1.25 * e["scale_provided"])


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="people"):
        SynthConfig(people=0)
    with pytest.raises(ValueError, match="val_fraction"):
        SynthConfig(val_fraction=1.0)
    with pytest.raises(ValueError, match="width_range"):
        SynthConfig(width_range=(500, 400))


def test_generate_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate(replace(SMALL, people=2), tmp_path)
    generate(replace(SMALL, people=2), tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / ANNOTATIONS).is_file()


def test_cli_writes_the_dataset_and_reports(tmp_path):
    from pipelines.cli.app import build_app

    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(build_app(), ["synth", "--out", str(out), "--people", "5", "--seed", "2",
                                         "--workers", "1", "--width-range", "330", "340"])
    assert result.exit_code == 0, result.output
    assert "wrote 5 people" in result.output and "images/s" in result.output
    entries = json.loads((out / ANNOTATIONS).read_text())
    assert len(entries) == 5 and all(330 <= e["img_width"] <= 340 for e in entries)
    again = runner.invoke(build_app(), ["synth", "--out", str(out), "--people", "5"])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_cli_options_are_the_config_fields_with_its_defaults():
    from typing import get_type_hints

    from pipelines.cli.synth import synth

    params = get_type_hints(synth, include_extras=True)
    params.pop("return")
    config_fields = {f.name: f.default for f in fields(SynthConfig)}
    assert set(params) - {"out", "overwrite"} == set(config_fields)
    for name, field_default in config_fields.items():
        help_text = params[name].__metadata__[0].help
        stated = re.search(r"\(default ([^)]+)\)", help_text).group(1).split()
        expected = list(field_default) if isinstance(field_default, tuple) else [field_default]
        assert [float(v) for v in stated] == [float(v) for v in expected], name
