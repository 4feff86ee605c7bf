"""The saved-model format: local directories and a real MLflow sqlite store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.inference import model_dir
from pipelines.tracking.model_io import download_model, load_model
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
    """A real MLflow sqlite tracking + registry store with artifacts under tmp_path, and a run in
    it; passed explicitly (no process-wide MLflow state)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("model-io", artifact_location=(tmp_path / "art").as_uri())
    return uri, client, client.create_run(experiment).info.run_id


def test_log_and_load_by_every_uri(mlflow_store, tmp_path):
    import mlflow

    from pipelines.tracking.registry import register_model

    store, client, run_id = mlflow_store
    model, card = tiny_model(), tiny_card()
    version = register_model(model, card, tracking_uri=store, run_id=run_id, name="tiny-pose",
                             metrics={"eval/pckh/Total": 12.5})
    client.set_registered_model_alias("tiny-pose", "champion", version)
    # the logged model is the run's one output, and the metric it was registered on is linked to it
    (output,) = client.get_run(run_id).outputs.model_outputs
    model_id = output.model_id
    uri = f"models:/{model_id}"
    assert client.get_logged_model(model_id).source_run_id == run_id
    assert [(m.key, m.value) for m in client.get_logged_model(model_id).metrics] == [("eval/pckh/Total", 12.5)]
    x = images()
    expected, expected_conf = predict_keypoints(model, x, card.flip_pairs)
    for each in (uri, f"runs:/{run_id}/model", "models:/tiny-pose/1", "models:/tiny-pose@champion"):
        loaded, loaded_card = load_model(each, tracking_uri=store)
        assert loaded_card == card, each
        coords, conf = predict_keypoints(loaded, x, loaded_card.flip_pairs)
        np.testing.assert_array_equal(coords, expected, err_msg=each)
        np.testing.assert_array_equal(conf, expected_conf, err_msg=each)

    # the pyfunc: whole images and person boxes in, keypoints in image px out
    pyfunc = mlflow.pyfunc.load_model(download_model("models:/tiny-pose@champion", tmp_path / "pyfunc",
                                                      tracking_uri=store))
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


def test_unknown_uri_is_a_clear_error(mlflow_store):
    with pytest.raises(ValueError, match="cannot download model models:/nobody/1"):
        load_model("models:/nobody/1", tracking_uri=mlflow_store[0])
