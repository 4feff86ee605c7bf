"""The model registry and its champion gate.

A trained model is logged to its run (`pipelines.tracking.model_io.log_model`) and registered under one
name (default `stacked-hourglass`). The alias `champion` moves to the new version only when its
validation PCKh Total beats the current champion's measured on the same validation rows (same
validation fingerprint); after the data changed, the champion is scored on the new rows first,
so retraining on new data can displace it. The first version becomes champion; a version that
does not win gets the alias `challenger`. Every version carries its scores as tags (one per set
of validation rows), and the decision with both numbers is recorded on the training run.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

# Imported where used: mlflow, pipelines.tracking.model_io (mlflow and torch load in seconds: only
# the calls that talk to the registry pay for them)

DEFAULT_MODEL_NAME = "stacked-hourglass"
CHAMPION = "champion"
CHALLENGER = "challenger"
PCKH_TAG = "val.pckh_total"
VERSION_VAL_FINGERPRINT_TAG = "val.fingerprint"  # model-version tag: the rows PCKh was measured on
DECISION_TAG_PREFIX = "registry."  # run tags recording a gate decision (`GateDecision.to_tags`)


@dataclass(frozen=True)
class GateDecision:
    """The outcome of `promote_if_better`.

    Attributes:
        alias: `champion` (promoted) or `challenger`.
        new_total: the new version's validation PCKh Total, percent.
        champion_total / champion_version: the champion it was compared with, scored on the same
            validation rows (None if none, or never scored on them).
        val_fingerprint: the validation rows both numbers were measured on.
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
    val_fingerprint: str = ""
    # "replace" | "keep" when the champion could not be scored on these rows and that policy
    # decided; "" otherwise. The error is in `reason` and on the champion's version tags.
    unscorable_champion: str = ""

    def to_tags(self) -> dict[str, str]:
        """Run tags `registry.*` recording the decision and both numbers (None as "")."""
        values = asdict(self)
        if not values["unscorable_champion"]:  # said only when that policy decided
            del values["unscorable_champion"]
        return {f"{DECISION_TAG_PREFIX}{k}": "" if v is None else str(v) for k, v in values.items()}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> GateDecision | None:
        """The decision that `to_tags` recorded in a run's tags; None when the run has none.

        Raises:
            ValueError: the run has `registry.version` but not the rest of a decision.
        """
        values = {k[len(DECISION_TAG_PREFIX):]: v for k, v in tags.items() if k.startswith(DECISION_TAG_PREFIX)}
        if not values.get("version"):
            return None
        missing = [k for k in ("name", "alias", "promoted", "new_total", "reason") if k not in values]
        if missing:
            raise ValueError(f"the run's registry tags lack {[DECISION_TAG_PREFIX + k for k in missing]}: "
                             "not a decision recorded by the champion gate")
        champion_total = values.get("champion_total", "")
        return cls(name=values["name"], version=values["version"], alias=values["alias"],
                   promoted=values["promoted"] == "True", new_total=float(values["new_total"]),
                   champion_version=values.get("champion_version") or None,
                   champion_total=float(champion_total) if champion_total else None,
                   reason=values["reason"], val_fingerprint=values.get("val_fingerprint", ""),
                   unscorable_champion=values.get("unscorable_champion", ""))


def score_tag(val_fingerprint: str) -> str:
    """The model-version tag holding PCKh Total on the validation rows `val_fingerprint` names."""
    return f"val.pckh_total.{hashlib.sha256(val_fingerprint.encode()).hexdigest()[:16]}"


def promote_if_better(name: str, version: str | int, *, pckh_total: float, val_fingerprint: str,
                      tracking_uri: str, run_id: str | None = None,
                      score_version: Callable[[str], float] | None = None,
                      unscorable_champion: str = "replace") -> GateDecision:
    """Tags version `version` of `name` with its score and moves `champion` to the best version.

    Versions are compared only on the same validation rows. When the champion was never scored
    on these rows (the data changed since it won), `score_version("models:/<name>/<v>")` scores it
    now, on the same rows, and the score is kept as a tag; without `score_version` such a
    champion is not comparable and keeps its place.

    Safe under concurrency: MLflow has no compare-and-set, so the alias converges instead. Each
    promotion tags its score first, then repeatedly reads every version's score on these rows and
    points `champion` at the best one (ties keep the current champion) until a read finds it
    already there. Whatever the interleaving, the last promotion to finish has read every score
    tagged before it, so two trainings finishing together leave the better one as champion.

    Args:
        pckh_total: the new version's validation PCKh@0.5 Total (official, percent).
        val_fingerprint: fingerprint of the validation rows it was measured on.
        tracking_uri: the MLflow store holding the registry.
        run_id: when given, the decision is recorded as `registry.*` tags on this run.
        unscorable_champion: when `score_version` raises (the champion's artifacts were deleted,
            its card is one this code rejects, ...): "replace" points `champion` at this version,
            "keep" leaves the champion and makes this version challenger. Either way the error
            and the policy are tagged on both versions (`registry.unscorable*`) and in the
            decision: the gate never fails on a champion it cannot score, so no later
            registration fails the same way.
    """
    if unscorable_champion not in ("replace", "keep"):
        raise ValueError(f"unscorable_champion must be replace or keep, not {unscorable_champion!r}")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)  # the store's own registry
    version, key = str(version), score_tag(val_fingerprint)
    client.set_model_version_tag(name, version, PCKH_TAG, repr(float(pckh_total)))
    client.set_model_version_tag(name, version, VERSION_VAL_FINGERPRINT_TAG, val_fingerprint)
    client.set_model_version_tag(name, version, key, repr(float(pckh_total)))

    def champion_version():
        try:
            return client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:  # no champion yet (the alias does not exist)
            return None

    before = champion_version()
    if before is not None and str(before.version) != version and key not in before.tags and score_version:
        try:
            score = float(score_version(f"models:/{name}/{before.version}"))
        except Exception as err:  # any failure to score it: handled by the policy, recorded
            return _unscorable(client, name, version, before, err, policy=unscorable_champion,
                               pckh_total=pckh_total, val_fingerprint=val_fingerprint, run_id=run_id)
        client.set_model_version_tag(name, str(before.version), key, repr(score))

    for _ in range(20):  # converges in one or two rounds; the bound only guards a broken store
        current = champion_version()
        scores = {str(v.version): float(v.tags[key])
                  for v in client.search_model_versions(f"name='{name}'") if key in v.tags}
        if current is not None and str(current.version) not in scores:
            break  # the champion was never scored on these rows: not comparable, it stays
        holder = None if current is None else str(current.version)
        best = max(scores, key=lambda v: (scores[v], v == holder, -int(v)))
        if best == holder:
            break
        client.set_registered_model_alias(name, CHAMPION, best)

    after = champion_version()
    promoted = after is not None and str(after.version) == version
    champion_total = None
    if before is None:
        reason = "first registered version becomes champion" if promoted else "another version won the race"
    else:
        fresh = client.get_model_version(name, str(before.version)).tags
        champion_total = _float_or_none(fresh.get(key))
        if str(before.version) == version:
            reason = "already champion"
        elif champion_total is None:
            reason = (f"champion v{before.version} was never scored on these validation rows "
                      f"({val_fingerprint}); not comparable")
        elif promoted:
            reason = f"PCKh Total {pckh_total:.2f} beats champion v{before.version}'s {champion_total:.2f} on the same rows"
        else:
            reason = (f"PCKh Total {pckh_total:.2f} does not beat champion v{after.version}'s "
                      f"{_float_or_none(client.get_model_version(name, str(after.version)).tags.get(key))} on the same rows")
    alias = CHAMPION if promoted else CHALLENGER
    _mark_challenger(client, name, version, promoted)
    decision = GateDecision(name=name, version=version, alias=alias, promoted=promoted,
                            new_total=float(pckh_total),
                            champion_version=None if before is None else str(before.version),
                            champion_total=champion_total, reason=reason,
                            val_fingerprint=val_fingerprint)
    if run_id is not None:
        for tag, value in decision.to_tags().items():
            client.set_tag(run_id, tag, value)
    return decision


def _mark_challenger(client, name: str, version: str, promoted: bool) -> None:
    """A promoted version stops being `challenger`; one that is not promoted becomes it."""
    from mlflow.exceptions import MlflowException

    if promoted:
        try:  # the winner is no longer a challenger
            if str(client.get_model_version_by_alias(name, CHALLENGER).version) == version:
                client.delete_registered_model_alias(name, CHALLENGER)
        except MlflowException:
            pass
    else:
        client.set_registered_model_alias(name, CHALLENGER, version)


def _unscorable(client, name: str, version: str, champion, err: Exception, *, policy: str,
                pckh_total: float, val_fingerprint: str, run_id: str | None) -> GateDecision:
    """The gate's decision when champion `champion` could not be scored (see `promote_if_better`)."""

    cause = f"{type(err).__name__}: {err}"[:1000]
    old = str(champion.version)
    if policy == "replace":
        client.set_registered_model_alias(name, CHAMPION, version)
        reason = (f"champion v{old} could not be scored on these validation rows ({cause}); "
                  f"policy unscorable_champion=replace: v{version} ({pckh_total:.2f}) replaces it")
    else:
        reason = (f"champion v{old} could not be scored on these validation rows ({cause}); "
                  f"policy unscorable_champion=keep: it stays champion, v{version} ({pckh_total:.2f}) is challenger")
    client.set_model_version_tag(name, old, "registry.unscorable", cause)
    client.set_model_version_tag(name, old, "registry.unscorable_on", val_fingerprint)
    client.set_model_version_tag(name, version, "registry.unscorable_champion", f"{policy}: v{old}: {cause}")
    promoted = policy == "replace"
    _mark_challenger(client, name, version, promoted)
    decision = GateDecision(name=name, version=version, alias=CHAMPION if promoted else CHALLENGER,
                            promoted=promoted, new_total=float(pckh_total), champion_version=old,
                            champion_total=None, reason=reason, val_fingerprint=val_fingerprint,
                            unscorable_champion=policy)
    if run_id is not None:
        for tag, value in decision.to_tags().items():
            client.set_tag(run_id, tag, value)
    return decision


def register_model(model, card, *, tracking_uri: str, run_id: str, name: str = DEFAULT_MODEL_NAME,
                   metrics: dict[str, float] | None = None, step: int = 0) -> str:
    """Logs `model` with its card as a LoggedModel of run `run_id` and registers it under
    `name`; returns the version. One explicit client for the store; the run keeps its status.

    `metrics` (e.g. the validation PCKh table, `pckh/<joint>`) are logged on the run at `step`
    linked to the model, so the model's page in MLflow shows the numbers it was registered on.
    """
    import mlflow
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    from pipelines.tracking.model_io import log_model

    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)  # the store's own registry
    model_uri = log_model(model, card, tracking_uri=tracking_uri, run_id=run_id, name="model", step=step)
    model_id = model_uri.removeprefix("models:/")
    if metrics:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(key, float(value), now, step, model_id=model_id)
                                          for key, value in metrics.items()])
    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # the artifacts' location as the source, not `models:/<id>`: MLflow's SQL registry resolves
    # that through the process-wide tracking URI, not this client's store
    source = client.get_logged_model(model_id).artifact_location
    registered = client.create_model_version(name, source=source, run_id=run_id, model_id=model_id)
    return str(registered.version)


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
