"""The MLflow UI of a finished smoke run, seen in a real headless Chromium.

`shg tracking-server` serves the store of the shared tiny workflow run (test_workflow's
`run_tiny_once`); Playwright drives Debian's `chromium` (`apt-get install chromium`, Python
package from `pip install -e '.[browser]'`) through the pages a person would open: the
experiment's run list, the training run, its per-stack loss chart, the PCKh table and the
validation skeleton grid among its artifacts, and the registered champion. Screenshots go to
`$SHG_TEST_ARTIFACTS/browser` (default `test-artifacts/browser` in the checkout).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from tiny_run import run_tiny_once

from pipelines.tracking.server import TrackingServerConfig, start_server, stop_server, wait_until_ready

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 60_000  # a cold UI bundle on 2 busy cores


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium on PATH: install it with `apt-get install -y chromium` (scripts/setup.sh "
                "does when run as root)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def screenshots() -> Path:
    folder = Path(os.environ.get("SHG_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser_page():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed: pip install -e '.[browser]'")
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


@pytest.mark.slow
def test_a_person_finds_the_run_its_charts_tables_and_the_champion(tmp_path_factory, ray_local,
                                                                   browser_page, screenshots):
    from mlflow import MlflowClient

    cfg, result = run_tiny_once(tmp_path_factory.getbasetemp())
    server_cfg = TrackingServerConfig(port=_free_port(), workdir=cfg.workdir, auth=False)
    server = start_server(server_cfg, log_path=tmp_path_factory.mktemp("ui") / "server.log")
    try:
        wait_until_ready(server_cfg.url, proc=server)
        client = MlflowClient(server_cfg.url)
        run = client.get_run(result.train_run_id)
        experiment = client.get_experiment(run.info.experiment_id)
        page, base = browser_page, server_cfg.url

        # the home page lists the experiment; its run list shows the workflow run by name (the
        # training and evaluation runs are nested under it)
        parent = client.get_run(result.parent_run_id)
        page.goto(f"{base}/#/experiments")
        page.get_by_text(experiment.name, exact=True).first.click()
        page.get_by_text(experiment.name).first.wait_for()
        # opened as model training (not the GenAI view); the workflow run listed by its readable name
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        assert parent.info.run_name.startswith("workflow-smoke-hg1x8-")
        page.screenshot(path=screenshots / "01-experiment-runs.png")
        page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs")
        page.get_by_text(parent.info.run_name).first.wait_for()
        page.screenshot(path=screenshots / "01b-experiment-run-names.png")
        assert parent.data.tags["step.train"] == "ran"  # the workflow run the training run is nested in
        # the training run: the link `shg train` prints at its start (tracking.uris.how_to_open)
        page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}")
        page.get_by_text(run.info.run_name).first.wait_for()
        page.get_by_text("Model metrics").first.wait_for()
        # the overview's source (MLflow's mlflow.source.name, shown by file name), user and dataset
        page.get_by_text(Path(run.data.tags["mlflow.source.name"]).name).first.wait_for()
        page.get_by_text(run.data.tags["mlflow.user"]).first.wait_for()
        page.get_by_text(run.inputs.dataset_inputs[0].dataset.name).first.wait_for()
        page.screenshot(path=screenshots / "02-run-overview.png")

        # the per-stack loss charts: the run's metric charts, searched for "stack" as a person would
        page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}/model-metrics")
        page.get_by_placeholder("Search metric charts").first.fill("stack")
        # charts sit in sections named by the metric's prefix ("loss", "val/loss") and are titled
        # by the rest ("stack_0")
        for section in ("loss", "val/loss"):
            page.get_by_text(section, exact=True).first.wait_for()
        page.get_by_text("stack_0", exact=True).first.wait_for()
        page.screenshot(path=screenshots / "03-model-metrics.png")

        # artifacts: the loss curves per stack, the PCKh table, the validation skeleton grid
        artifacts = f"{base}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}/artifactPath"
        for path, shot in (("plots/loss_per_stack.png", "04-loss-per-stack.png"),
                           ("plots/val_skeletons.png", "06-val-skeletons.png")):
            page.goto(f"{artifacts}/{path}")
            page.reload()  # the artifact view follows the path on load, not on a hash change
            page.get_by_text(path, exact=True).first.wait_for()  # the viewer's heading names the file
            # the plot itself: an image far wider than any icon of the page, fully loaded
            page.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 300)")
            page.screenshot(path=screenshots / shot)
        page.goto(f"{artifacts}/pckh/per_joint.md")
        page.reload()
        for word in ("Head", "Wrist", "Total"):
            page.get_by_text(word).first.wait_for()
        page.screenshot(path=screenshots / "05-pckh-table.png")

        # the registry: the model, its champion alias on the registered version
        version = client.get_model_version_by_alias("stacked-hourglass", "champion").version
        page.goto(f"{base}/#/models/stacked-hourglass")
        page.get_by_text("champion").first.wait_for()  # the alias, shown as "@ champion"
        page.get_by_text(f"Version {version}").first.wait_for()
        page.screenshot(path=screenshots / "07-registered-champion.png")
    finally:
        stop_server(server)
