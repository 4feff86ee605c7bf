"""The `shg` command line follows the conventions its users know: `--version`, `-h` on every
command, the exit statuses of one table (pipelines.cli.exits = docs/USAGE.md), `--json` where a
script reads the output, submit's sub-commands in `--help`, one name per setting."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipelines.cli import exits
from pipelines.cli.app import build_app
from pipelines.cli.prepare import prepare_config

ROOT = Path(__file__).resolve().parents[2]


def _walk(command, path: tuple[str, ...] = ()):
    yield path, command
    if hasattr(command, "commands"):  # a group (typer's own click)
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


def _commands():
    return list(_walk(typer.main.get_command(build_app())))


def test_version_prints_the_package_version():
    from importlib.metadata import version

    result = CliRunner().invoke(build_app(), ["--version"])
    assert result.exit_code == 0 and result.output == f"shg {version('shg')}\n"


def test_every_command_and_sub_command_takes_h_as_well_as_help():
    paths = [path for path, _ in _commands()]
    assert ("submit", "status") in paths and ("train",) in paths and len(paths) >= 17
    for path in paths:
        short = CliRunner().invoke(build_app(), [*path, "-h"])
        long = CliRunner().invoke(build_app(), [*path, "--help"])
        assert short.exit_code == 0, (path, short.output)
        assert short.output == long.output and "Usage: shg" in short.output, path


def test_json_is_offered_where_a_script_reads_the_output():
    with_json = {" ".join(path) for path, cmd in _commands()
                 if any("--json" in p.opts for p in cmd.params)}
    assert {"run", "train", "evaluate", "pckh", "submit status"} <= with_json


def test_submit_help_lists_its_sub_commands():
    result = CliRunner().invoke(build_app(), ["submit", "--help"])
    assert result.exit_code == 0
    for action in ("status", "logs", "stop", "list"):
        assert re.search(rf"^\W*{action}\s", result.output, re.M), action


def test_a_usage_error_is_click_s_2():
    result = CliRunner().invoke(build_app(), ["train", "--no-such-option"])
    assert result.exit_code == exits.USAGE.code == 2


def test_exit_statuses_are_the_documented_table():
    """docs/USAGE.md's one table of exit statuses lists exactly pipelines.cli.exits'."""
    usage = (ROOT / "docs" / "USAGE.md").read_text()
    section = usage.split("## Exit status", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\d+)` \| (\S+) \|", section, re.M)
    assert [(int(code), name) for code, name in rows] == [(s.code, s.name) for s in exits.EXIT_STATUSES]
    codes = [s.code for s in exits.EXIT_STATUSES]
    assert len(set(codes)) == len(codes) and {0, 1, 2, 69, 75} <= set(codes)
    assert "docs/USAGE.md#exit-status" in (ROOT / "README.md").read_text()


def test_failure_kinds_look_through_a_step_error_to_its_cause():
    from pipelines.config.overrides import ConfigError
    from pipelines.orchestration.errors import failure_kind
    from pipelines.orchestration.lock import WorkflowBusy
    from pipelines.orchestration.workflow import TrackingUnavailable, WorkflowError
    from pipelines.runtime.ray_cluster import ClusterUnavailable

    def step_error(cause: BaseException) -> WorkflowError:
        try:
            raise WorkflowError("step train failed") from cause
        except WorkflowError as err:
            return err

    assert exits.status_for(WorkflowBusy("held")) is exits.BUSY
    assert exits.status_for(TrackingUnavailable("down")) is exits.UNAVAILABLE
    assert exits.status_for(step_error(ClusterUnavailable("gone"))) is exits.UNAVAILABLE
    assert exits.status_for(step_error(RuntimeError("nan loss"))) is exits.FAILURE
    assert exits.status_for(ConfigError("unknown key")) is exits.USAGE
    assert failure_kind(RuntimeError("x")) == "failure"


def test_prepare_exits_busy_while_another_command_holds_its_output(tmp_path):
    from dataprep.synth import SynthConfig, generate
    from pipelines.orchestration.lock import dataset_lock

    generate(SynthConfig(people=4, seed=1, workers=1), tmp_path / "synth")
    out = tmp_path / "prepared"
    with dataset_lock(str(out), "shg train", write=False):  # flock: another open file conflicts
        result = CliRunner().invoke(build_app(), [
            "prepare", "--annotations", str(tmp_path / "synth" / "annotations.json"),
            "--images", str(tmp_path / "synth" / "images"), "--out", str(out)])
    assert result.exit_code == exits.BUSY.code == 75, result.output
    assert "is being read (shg train" in result.output and not out.exists()


def test_pckh_json_is_one_object_on_stdout(tmp_path):
    import numpy as np
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    joints = rng.uniform(50, 150, size=(16, 2, 3))
    savemat(tmp_path / "gt.mat", {"pos_gt_src": joints, "jnt_missing": np.zeros((16, 3)),
                                  "headboxes_src": np.tile(np.array([[0, 0], [60, 60]], float)[..., None], (1, 1, 3))})
    np.save(tmp_path / "p.npy", joints.transpose(2, 0, 1) + 1.0)
    result = CliRunner().invoke(build_app(), ["pckh", "--pred", str(tmp_path / "p.npy"), "--gt",
                                              str(tmp_path / "gt.mat"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["Total"] == pytest.approx(100.0)


# --- one name per setting: `shg prepare --jpeg-quality` is `prepare.jpeg_quality` of `shg run` ---

SAMPLE = {int: 7, float: 2.5, str: "x"}


def test_every_prepare_option_is_the_run_config_key_of_the_same_name(tmp_path):
    """Walks `shg prepare`'s options: each `--some-name` is `PrepareConfig.some_name`, the key
    `prepare.some_name` of `shg run`, and `shg prepare prepare.some_name=V` sets the same value;
    a default the help text states is the dataclass's."""
    from dataprep.prepare import PrepareConfig
    from pipelines.config.overrides import flatten
    from pipelines.config.run import RunConfig

    (command,) = [cmd for path, cmd in _commands() if path == ("prepare",)]
    options = [p for p in command.params if p.param_type_name == "option" and p.name != "help"]
    fields = {f.name: f for f in dataclasses.fields(PrepareConfig)}
    hints = typing.get_type_hints(PrepareConfig)
    run_keys = set(flatten(RunConfig()))
    base = {"annotations": "a.json", "images": "imgs", "out": "o"}
    assert {p.name for p in options} == set(fields)
    for option in options:
        assert option.opts == [f"--{option.name.replace('_', '-')}"], option.opts
        assert f"prepare.{option.name}" in run_keys, option.name
        value = SAMPLE.get(hints[option.name], "x")
        by_flag = prepare_config({**base, option.name: value})
        by_key = prepare_config({k: v for k, v in base.items() if k != option.name},
                                [f"prepare.{option.name}={value}"])
        assert by_flag == by_key and str(getattr(by_flag, option.name)) == str(value), option.name
        stated = re.search(r"\(default ([\w.]+)\)", option.help or "")
        default = fields[option.name].default
        if stated:
            assert stated.group(1) == (f"{default:g}" if isinstance(default, float) else str(default)), option.name


def test_prepare_refuses_a_setting_given_twice_or_a_key_it_does_not_have(tmp_path):
    base = ["--annotations", "a.json", "--images", "imgs", "--out", str(tmp_path / "o")]
    twice = CliRunner().invoke(build_app(), ["prepare", *base, "--jpeg-quality", "80", "prepare.jpeg_quality=70"])
    assert twice.exit_code == 2 and "prepare.jpeg_quality given both" in twice.output
    unknown = CliRunner().invoke(build_app(), ["prepare", *base, "prepare.jpeg=70"])
    assert unknown.exit_code == 2 and "unknown config key" in unknown.output and "prepare.jpeg_quality" in unknown.output
    missing = CliRunner().invoke(build_app(), ["prepare", "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "--annotations (or prepare.annotations=...)" in missing.output
