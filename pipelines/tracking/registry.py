"""The model registry and its champion gate.

A trained model is logged to its run (`pipelines.tracking.model_io.log_model`) and registered under one
name (default `stacked-hourglass`). The alias `champion` moves to the new version only when its
validation PCKh Total beats the current champion's measured on the same validation data
(same validation fingerprint); the first version becomes champion. Otherwise the new version
gets the alias `challenger`. Every version carries its numbers as tags, and the decision with
both numbers is recorded on the training run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass

TRACKING_ENV = "MLFLOW_TRACKING_URI"
REGISTRY_ENV = "MLFLOW_REGISTRY_URI"
DEFAULT_MODEL_NAME = "stacked-hourglass"
CHAMPION = "champion"
CHALLENGER = "challenger"
PCKH_TAG = "val.pckh_total"
VERSION_VAL_FINGERPRINT_TAG = "val.fingerprint"  # model-version tag: the rows PCKh was measured on


@dataclass(frozen=True)
class GateDecision:
    """The outcome of `promote_if_better`.

    Attributes:
        alias: `champion` (promoted) or `challenger`.
        new_total: the new version's validation PCKh Total, percent.
        champion_total / champion_version: the champion it was compared with (None if none).
        reason: one sentence a person can read in the run's tags.
    """

    name: str
    version: str
    alias: str
    promoted: bool
    new_total: float
    champion_version: str | None
    champion_total: float | None
    reason: str

    def as_tags(self) -> dict[str, str]:
        """Run tags `registry.*` recording the decision and both numbers."""
        return {f"registry.{k}": "" if v is None else str(v) for k, v in asdict(self).items()}


def promote_if_better(name: str, version: str | int, *, pckh_total: float, val_fingerprint: str,
                      tracking_uri: str | None = None, run_id: str | None = None) -> GateDecision:
    """Tags version `version` of `name` with its numbers and moves `champion` to it if it wins.

    Args:
        pckh_total: the new version's validation PCKh@0.5 Total (official, percent).
        val_fingerprint: fingerprint of the validation rows it was measured on
            (`pipelines.training.data_stream.validation_fingerprint`).
        tracking_uri: the MLflow store holding the registry (default: the current one).
        run_id: when given, the decision is recorded as `registry.*` tags on this run.
    Returns:
        the GateDecision. Versions are compared only on the same validation fingerprint: a
        champion measured on other data is never displaced by a number it cannot be compared with.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    # The registry is the tracking store's own (never a registry URI some other code exported).
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri) if tracking_uri else MlflowClient()
    version = str(version)
    client.set_model_version_tag(name, version, PCKH_TAG, repr(float(pckh_total)))
    client.set_model_version_tag(name, version, VERSION_VAL_FINGERPRINT_TAG, val_fingerprint)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no champion yet (the alias does not exist)
        champion = None

    champion_total = None
    if champion is None:
        promoted, reason = True, "first registered version becomes champion"
    elif str(champion.version) == version:
        champion_total = float(pckh_total)
        promoted, reason = True, "already champion"
    else:
        champion_total = _float_or_none(champion.tags.get(PCKH_TAG))
        if champion.tags.get(VERSION_VAL_FINGERPRINT_TAG) != val_fingerprint or champion_total is None:
            promoted = False
            reason = (f"champion v{champion.version} was validated on other data "
                      f"({champion.tags.get(VERSION_VAL_FINGERPRINT_TAG)} vs {val_fingerprint}); not comparable")
        elif pckh_total > champion_total:
            promoted = True
            reason = f"PCKh Total {pckh_total:.2f} beats champion v{champion.version}'s {champion_total:.2f}"
        else:
            promoted = False
            reason = f"PCKh Total {pckh_total:.2f} does not beat champion v{champion.version}'s {champion_total:.2f}"

    alias = CHAMPION if promoted else CHALLENGER
    client.set_registered_model_alias(name, alias, version)
    if promoted:
        try:  # the winner is no longer a challenger
            if str(client.get_model_version_by_alias(name, CHALLENGER).version) == version:
                client.delete_registered_model_alias(name, CHALLENGER)
        except MlflowException:
            pass
    decision = GateDecision(name=name, version=version, alias=alias, promoted=promoted,
                            new_total=float(pckh_total),
                            champion_version=None if champion is None else str(champion.version),
                            champion_total=champion_total, reason=reason)
    if run_id is not None:
        for key, value in decision.as_tags().items():
            client.set_tag(run_id, key, value)
    return decision


def register_model(model, card, *, tracking_uri: str, run_id: str, name: str = DEFAULT_MODEL_NAME) -> str:
    """Logs `model` with its card to run `run_id` and registers it under `name`; returns the version.

    The model is logged by `pipelines.tracking.model_io.log_model` (signature, input example, config,
    joint names, flip pairs, input size; weights-only format). The run keeps its status.
    """
    import mlflow

    from pipelines.tracking.model_io import log_model

    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    status = client.get_run(run_id).info.status
    with use_tracking_uri(tracking_uri):
        # start_run on an existing id re-attaches to it; leaving the block marks it FINISHED,
        # which is the caller's decision, so the status it had is put back below.
        with mlflow.start_run(run_id=run_id):
            model_uri = log_model(model, card, name="model")
        registered = mlflow.register_model(model_uri, name)
    client.update_run(run_id, status=status)
    return str(registered.version)


@contextlib.contextmanager
def use_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (`mlflow.start_run`, `register_model`, `models:/` URIs) talks to `uri`
    (and its model registry) inside the block. `mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI to the
    environment, which would silently redirect every later run of this process; both are put
    back on exit."""
    import mlflow

    # set_tracking_uri keeps the environment variable in step with its own setting, so the
    # variable tells what to go back to; None un-sets both (no default store gets pinned).
    saved, saved_registry = os.environ.get(TRACKING_ENV), os.environ.get(REGISTRY_ENV)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # the registry lives in the same store
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved)
        mlflow.set_registry_uri(saved_registry)
        if saved_registry is None:  # set_registry_uri(None) leaves the variable behind
            os.environ.pop(REGISTRY_ENV, None)


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
