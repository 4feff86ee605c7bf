"""A 200-person fraction of the full-scale rehearsal (benchmarks/rehearsal.py): the real MPII
annotations on stand-in images through prepare (official head sizes), the mpii profile's
network (reduced width, untrained: Ray Train costs ~100 s here and is tested elsewhere),
evaluate, export and `shg pckh`."""

from __future__ import annotations

import numpy as np

from benchmarks.rehearsal import run_rehearsal, sample_annotations
from dataprep.mpii import load_annotations
from benchmarks.standin import image_generator, image_sizes, standin_image, write_standin_images


def test_standin_sizes_fit_the_people_and_images_are_deterministic(mpii_dir, tmp_path):
    annotations = sample_annotations(mpii_dir / "mpii_annotations.json.gz", 20, tmp_path, seed=3)
    records = load_annotations(annotations)
    sizes = image_sizes(records)
    assert set(sizes) == {r.image for r in records}
    for r in records:
        assert sizes[r.image] == (r.width, r.height)  # the JSON says the size: prepare checks it
    undeclared = image_sizes([r.__class__(**{**r.to_dict(), "width": 0, "height": 0}) for r in records[:1]])
    (w, h), = undeclared.values()
    r = records[0]
    assert w >= np.nanmax(r.joints[:, 0]) + 1 and h >= np.nanmax(r.joints[:, 1]) + 1 and w >= r.center[0] + 1
    a = standin_image(40, 30, image_generator(0, "x.jpg"))
    assert a.shape == (30, 40, 3) and np.array_equal(a, standin_image(40, 30, image_generator(0, "x.jpg")))
    assert write_standin_images({"d/x.jpg": (40, 30)}, tmp_path / "1") == write_standin_images({"d/x.jpg": (40, 30)}, tmp_path / "2")
    assert (tmp_path / "1" / "d" / "x.jpg").read_bytes() == (tmp_path / "2" / "d" / "x.jpg").read_bytes()


def test_rehearsal_of_200_people(mpii_dir, tmp_path):
    report = run_rehearsal(tmp_path, people=200, channels=16, max_steps=0, log=lambda line: None)
    people, quarantined = report["prepare"]["people"], report["prepare"]["quarantined"]
    manifest = report["manifest"]
    assert sum(people.values()) == 200 == manifest["rows_in"]
    assert manifest["rows"]["val"] == people["val"] - quarantined["val"]  # checked inside too
    assert manifest["head_size_sources"]["val"] == {"detections_mat_headbox": people["val"]}
    assert manifest["head_sizes"]["val_records_not_in_file"] == 0
    assert report["evaluate"]["rows"] == manifest["rows"]["val"]
    assert report["export"] == {"rows": 2958, "predicted": manifest["rows"]["val"], "unmatched": 0}
    assert set(report["pckh"]) == {"Total", "Head", "Wrist", "Ankle"}


def test_shg_run_on_real_annotation_files_with_the_mpii_profile(mpii_dir, tmp_path, ray_local):
    """The path a real user takes: `shg run --profile mpii prepare.annotations=… prepare.images=…`
    (the profile's recipe, cut to CPU size by the user's own overrides, which win)."""
    from pipelines.orchestration.plan import WorkflowConfig
    from pipelines.orchestration.workflow import STEPS, run_workflow

    annotations = sample_annotations(mpii_dir / "mpii_annotations.json.gz", 60, tmp_path, seed=5)
    write_standin_images(image_sizes(load_annotations(annotations)), tmp_path / "images")
    cfg = WorkflowConfig(profile="mpii", workdir=str(tmp_path / "work"), overrides=(
        f"prepare.annotations={annotations}", f"prepare.images={tmp_path / 'images'}",
        f"prepare.head_sizes={mpii_dir / 'detections_our_format.mat'}",
        "model.stacks=2", "model.channels=8", "data.input_size=64", "train.use_gpu=false", "train.workers=1",
        "train.epochs=1", "train.max_steps=2", "train.batch_size=4", "train.val_max_people=8"))
    result = run_workflow(cfg, log=lambda line: None)
    assert [(s.name, s.status) for s in result.steps] == [(n, "ran") for n in STEPS]
    assert result.step("prepare").detail["rows"]["val"] + result.step("prepare").detail["rows"]["train"] > 0
    assert result.pckh_total is not None  # scored on the real validation people (stand-in pixels)
