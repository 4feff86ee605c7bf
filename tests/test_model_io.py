"""The saved-model format: local directories and a real MLflow sqlite store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.inference import model_dir
from pipelines.tracking.model_io import load_model, log_model
from pipelines.inference.keypoints import predict_keypoints
from pipelines.inference.people import box_to_center_scale, predict_people
from shg_model import HourglassConfig, StackedHourglass

TINY = HourglassConfig(stacks=2, channels=8, depth=2)  # 64 px input (4 * 2**2 = 16 multiple)


def tiny_model(seed: int = 0) -> StackedHourglass:
    torch.manual_seed(seed)
    model = StackedHourglass(TINY)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def tiny_card(**kwargs) -> model_dir.ModelCard:
    return model_dir.ModelCard.for_config(TINY, input_size=64, heatmap_size=16, **kwargs)


def images(n: int = 3) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8)


def test_directory_round_trip_gives_identical_outputs(tmp_path):
    model = tiny_model()
    card = tiny_card(val_fingerprint="abc123", val_metrics={"Total": 12.5})
    model_dir.save_model_dir(model, card, tmp_path / "m")
    # Plain tensors only: loadable without unpickling arbitrary objects.
    state = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert json.loads((tmp_path / "m" / "card.json").read_text())["model_config"]["channels"] == 8

    loaded, loaded_card = load_model(tmp_path / "m")
    assert loaded_card == card
    assert not loaded.training
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_compiled_or_wrapped_prefixes_are_stripped(tmp_path):
    wrapper = torch.nn.Module()
    wrapper.module = tiny_model()  # what DistributedDataParallel's state_dict looks like
    model_dir.save_model_dir(wrapper, tiny_card(), tmp_path)
    loaded, _ = model_dir.load_model_dir(tmp_path)
    torch.testing.assert_close(loaded.state_dict(), wrapper.module.state_dict())


def test_card_weights_mismatch_is_refused(tmp_path):
    model_dir.save_model_dir(tiny_model(), tiny_card(), tmp_path)
    card = json.loads((tmp_path / "card.json").read_text())
    card["model_config"]["channels"] = 16
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"weights.pt: the weights do not match.*wrong shape"):
        load_model(tmp_path)
    card["model_config"]["channels"], card["model_config"]["stacks"] = 8, 1
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="unexpected"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="saving to"):
        model_dir.save_model_dir(tiny_model(), model_dir.ModelCard.for_config(
            HourglassConfig(stacks=1, channels=8, depth=2), input_size=64, heatmap_size=16), tmp_path / "x")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"joint_names": ("a", "b")}, "2 joint names"),
        ({"flip_pairs": tuple(range(15))}, "flip_pairs"),
        ({"heatmap_size": 32}, "heatmap_size"),
        ({"input_size": 72, "heatmap_size": 18}, "multiple of 16"),
        ({"model_config": {**vars(TINY), "width": 3}}, "unknown HourglassConfig keys"),
    ],
)
def test_inconsistent_cards_are_refused(change, message):
    values = tiny_card().to_dict() | change
    with pytest.raises(ValueError, match=message):
        model_dir.ModelCard.from_dict(values)


def test_unknown_card_key_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="unknown model card keys"):
        model_dir.ModelCard.from_dict(tiny_card().to_dict() | {"colour": "red"})
    with pytest.raises(FileNotFoundError, match="card.json"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        load_model(tmp_path / "nowhere")


@pytest.fixture
def mlflow_store(tmp_path):
    """A real MLflow sqlite tracking + registry store with artifacts under tmp_path.

    `mlflow.set_*_uri` exports MLFLOW_*_URI, so the variables say what to go back to; None
    un-sets the tracking URI (no default store gets pinned for later tests)."""
    import os

    import mlflow

    saved = os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_REGISTRY_URI")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        experiment = mlflow.create_experiment("model-io", artifact_location=(tmp_path / "art").as_uri())
        yield mlflow, experiment
    finally:
        mlflow.set_tracking_uri(saved[0])
        mlflow.set_registry_uri(saved[1])
        if saved[1] is None:  # set_registry_uri(None) leaves the variable behind
            os.environ.pop("MLFLOW_REGISTRY_URI", None)


def test_log_and_load_by_every_uri(mlflow_store):
    mlflow, experiment = mlflow_store
    from mlflow import MlflowClient

    model, card = tiny_model(), tiny_card()
    with mlflow.start_run(experiment_id=experiment) as run:
        uri = log_model(model, card, registered_model_name="tiny-pose")
    MlflowClient().set_registered_model_alias("tiny-pose", "champion", "1")
    x = images()
    expected, expected_conf = predict_keypoints(model, x, card.flip_pairs)
    for each in (uri, f"runs:/{run.info.run_id}/model", "models:/tiny-pose/1",
                 "models:/tiny-pose@champion"):
        loaded, loaded_card = load_model(each)
        assert loaded_card == card, each
        coords, conf = predict_keypoints(loaded, x, loaded_card.flip_pairs)
        np.testing.assert_array_equal(coords, expected, err_msg=each)
        np.testing.assert_array_equal(conf, expected_conf, err_msg=each)

    # the pyfunc: whole images and person boxes in, keypoints in image px out
    pyfunc = mlflow.pyfunc.load_model("models:/tiny-pose@champion")
    assert pyfunc.metadata.get_input_schema().input_names() == ["image", "boxes"]
    boxes = [[4, 6, 40, 60], [10.5, 0.0, 63.0, 30.0]]
    out = pyfunc.predict(pd.DataFrame({"image": [x[0], x[1]], "boxes": [boxes, []]}))
    assert list(out["image_index"]) == [0, 0, 1] and list(out["person_index"]) == [0, 1, 0]
    whole = [-0.5, -0.5, 63.5, 63.5]  # no box: the person fills the image
    expected = predict_people(model, card, [x[0], x[0], x[1]],
                              [box_to_center_scale(b) for b in boxes + [whole]])
    for row, (keypoints, confidence) in zip(out.itertuples(), expected):
        np.testing.assert_allclose(row.keypoints, keypoints, rtol=0, atol=1e-4)
        np.testing.assert_allclose(row.confidence, confidence, rtol=0, atol=1e-6)
    no_flip = pyfunc.predict(pd.DataFrame({"image": [x[1]]}), params={"flip": False})
    np.testing.assert_allclose(
        no_flip["keypoints"][0], predict_people(model, card, [x[1]], [box_to_center_scale(whole)],
                                                flip=False)[0][0], atol=1e-4)
    with pytest.raises(ValueError, match="row 0 box 0: .*empty"):
        pyfunc.predict(pd.DataFrame({"image": [x[0]], "boxes": [[[5, 5, 5, 9]]]}))


def test_log_model_needs_an_active_run(mlflow_store):
    with pytest.raises(RuntimeError, match="active MLflow run"):
        log_model(tiny_model(), tiny_card())


def test_unknown_uri_is_a_clear_error(mlflow_store):
    with pytest.raises(ValueError, match="cannot download model models:/nobody/1"):
        load_model("models:/nobody/1")
