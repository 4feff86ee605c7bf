"""`shg run`, `shg submit`, `shg rerun`, `shg schedule`, `shg tracking-server`: operating the pipeline.

The logic lives in `pipelines.orchestration.workflow`, `.submit`, `.rerun`, `.schedule` and
`.tracking_server`; these functions only turn options into their config dataclasses and print.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from pipelines.cli import exits

# Imported where used: pipelines.orchestration (each command imports it inside its function: it
# loads torch, ray and mlflow, seconds that `shg --help` and the other commands should not pay for)

# Options shared by `run` and `schedule` (names = `WorkflowConfig` fields).
Profile = Annotated[str, typer.Option(help="Recipe file from pipelines/config/profiles/ (synthetic | smoke | mpii); '' = dataclass defaults.")]
ConfigFile = Annotated[str, typer.Option("--config", help="YAML/TOML config file applied after the profile (e.g. a copied profile or a run's config.yaml).")]
PrintConfig = Annotated[bool, typer.Option(help="Print the resolved configuration as YAML and exit without running.")]
Workdir = Annotated[str, typer.Option(help="Work dir: data, checkpoints, local MLflow store, lock.")]
TrackingUri = Annotated[
    str, typer.Option(help="MLflow tracking URI (e.g. http://127.0.0.1:5000); default: sqlite under --workdir.")
]
Address = Annotated[
    str, typer.Option(help="Ray cluster: empty = an embedded local Ray for this run; 'auto' or HOST:PORT = existing.")
]
Force = Annotated[bool, typer.Option(help="Redo every step even when its inputs are unchanged.")]
Overrides = Annotated[
    Optional[list[str]],
    typer.Argument(help="KEY=VALUE overrides: synth.*, prepare.*, model.*, data.*, train.*", show_default=False),
]

JsonOutput = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object on stdout; progress goes to stderr.")]
JobAddress = Annotated[Optional[str], typer.Option(
    help="Ray Jobs API (dashboard) URL; default: `shg submit --address`, $RAY_ADDRESS or http://127.0.0.1:8265.")]
JobId = Annotated[str, typer.Argument(help="The job's submission id (what `shg submit` printed).")]


class _SubmitGroup(TyperGroup):
    """`shg submit` is a group (its sub-commands show in `--help`) that also runs without one:
    anything that is not a sub-command's name (`shg submit --follow -- --profile smoke`) goes to
    the submitted step, as before."""

    def parse_args(self, ctx, args):
        rest = super().parse_args(ctx, args)
        if ctx._protected_args and ctx._protected_args[0] not in self.commands:
            ctx.args = [*ctx._protected_args, *ctx.args]
            ctx._protected_args = []
            return ctx.args
        return rest


def register(app: typer.Typer) -> None:
    """Adds this module's commands to `app`."""
    app.command("run")(run)
    jobs_app = typer.Typer(
        name="submit", cls=_SubmitGroup, invoke_without_command=True, no_args_is_help=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    jobs_app.callback()(submit)
    jobs_app.command("status")(submit_status)
    jobs_app.command("logs")(submit_logs)
    jobs_app.command("stop")(submit_stop)
    jobs_app.command("list")(submit_list)
    app.add_typer(jobs_app)
    app.command("rerun")(rerun)
    app.command("schedule")(schedule)
    app.command("tracking-server")(tracking_server)


def run(
    overrides: Overrides = None,
    profile: Profile = "synthetic",
    config: ConfigFile = "",
    workdir: Workdir = "runs",
    tracking_uri: TrackingUri = "",
    address: Address = "",
    force: Force = False,
    print_config: PrintConfig = False,
    verbose: Annotated[bool, typer.Option(help="Show Ray's own output (worker logs, Ray Train/Data messages) here.")] = False,
    json_output: JsonOutput = False,
) -> None:
    """Run the workflow: prepare → train → evaluate → register (unchanged steps are reused)."""
    from pipelines.orchestration.plan import WorkflowConfig

    cfg = WorkflowConfig(
        profile=profile, config=config, workdir=workdir, tracking_uri=tracking_uri, address=address,
        force=force, overrides=tuple(overrides or ()), verbose=verbose,
    )  # fmt: skip
    if print_config:
        _print_config(cfg)
        return
    result = _run_workflow_or_exit(cfg, json_output=json_output)
    if json_output:
        exits.emit_json(workflow_summary(result))


def workflow_summary(result) -> dict:
    """What `shg run --json` prints: the parent run, each step's outcome, the score."""
    return {"parent_run_id": result.parent_run_id, "train_run_id": result.train_run_id,
            "outcome": result.outcome, "skipped": result.skipped, "data_fingerprint": result.data_fingerprint,
            "pckh_total": result.pckh_total, "pckh_people": result.pckh_people,
            "summary_path": result.summary_path,
            "steps": [{"name": s.name, "status": s.status, "seconds": s.seconds} for s in result.steps]}


def _print_config(cfg) -> None:
    from pipelines.orchestration.plan import resolve

    try:
        run = resolve(cfg)
    except ValueError as err:
        exits.fail(str(err), exits.USAGE)
    typer.echo(run.config.to_yaml(header=f"shg run --profile {cfg.profile!r}: resolved configuration"), nl=False)


def _run_workflow_or_exit(cfg, *, json_output: bool = False):
    from pipelines.orchestration.errors import BUSY_ERRORS, UNAVAILABLE_ERRORS
    from pipelines.orchestration.workflow import WorkflowError, run_workflow

    try:
        result = run_workflow(cfg, log=lambda line: typer.echo(line, err=json_output))
    except (*BUSY_ERRORS, *UNAVAILABLE_ERRORS, WorkflowError, ValueError) as err:
        exits.fail_on(err)
    steps = ", ".join(f"{s.name}={s.status} ({s.seconds:.1f} s)" for s in result.steps)
    score = "" if result.pckh_total is None else (
        f"; validation PCKh@0.5 Total {result.pckh_total:.1f} % ({result.pckh_label})")
    typer.echo(f"workflow run {result.parent_run_id}: {steps}{score}", err=json_output)
    return result


def submit(
    ctx: typer.Context,
    address: Annotated[
        Optional[str], typer.Option(help="Ray Jobs API (dashboard) URL; default $RAY_ADDRESS or http://127.0.0.1:8265.")
    ] = None,
    follow: Annotated[bool, typer.Option(help="Stream the job's logs until it ends; exit 1 unless it SUCCEEDED.")] = False,
    step: Annotated[str, typer.Option(help="Command the job runs: run (the workflow), synth, prepare, train, evaluate, rerun, schedule.")] = "run",
) -> None:
    """Submit the workflow (or one step) as a Ray job; the sub-commands watch and stop jobs.

    Everything after `--` goes to the step, e.g. `shg submit --follow -- --profile smoke train.epochs=1`.
    """
    if ctx.invoked_subcommand is not None:  # status | logs | stop | list: they read --address from here
        return
    from pipelines.orchestration import submit as jobs

    address = address or jobs.default_address()
    try:
        cfg = jobs.SubmitConfig(address=address, step=step, args=jobs.split_workflow_args(list(ctx.args)))
        job_id = jobs.submit(cfg)
    except (ConnectionError, FileNotFoundError, ValueError) as err:
        exits.fail_on(err)
    typer.echo(job_id)
    if follow:
        _follow(jobs, address, job_id)


def _follow(jobs, address: str, job_id: str) -> None:
    final = jobs.follow(address, job_id, lambda text: typer.echo(text, nl=False))
    typer.echo(f"job {job_id}: {final}")
    if final != "SUCCEEDED":
        raise typer.Exit(code=exits.FAILURE.code)


def _jobs_address(ctx: typer.Context, address: str | None) -> str:
    """This sub-command's --address, else the group's (`shg submit --address URL status ID`),
    else the default."""
    from pipelines.orchestration import submit as jobs

    return address or (ctx.parent.params.get("address") if ctx.parent else None) or jobs.default_address()


def submit_status(ctx: typer.Context, job_id: JobId, address: JobAddress = None, json_output: JsonOutput = False) -> None:
    """Print a job's status: PENDING, RUNNING, STOPPED, SUCCEEDED or FAILED."""
    from pipelines.orchestration import submit as jobs

    address = _jobs_address(ctx, address)
    try:
        info = jobs.job_info(address, job_id) if json_output else None
        text = info["status"] if info else jobs.status(address, job_id)
    except (ConnectionError, ValueError, RuntimeError) as err:
        exits.fail_on(err)
    if json_output:
        exits.emit_json(info)
    else:
        typer.echo(text)


def submit_logs(ctx: typer.Context, job_id: JobId, address: JobAddress = None, follow: Annotated[
        bool, typer.Option(help="Stream the logs until the job ends; exit 1 unless it SUCCEEDED.")] = False) -> None:
    """Print a job's driver output (so far, or streamed with --follow)."""
    from pipelines.orchestration import submit as jobs

    address = _jobs_address(ctx, address)
    follow = follow or bool(ctx.parent and ctx.parent.params.get("follow"))
    try:
        if follow:
            _follow(jobs, address, job_id)
        else:
            typer.echo(jobs.logs(address, job_id), nl=False)
    except (ConnectionError, ValueError, RuntimeError) as err:
        exits.fail_on(err)


def submit_stop(ctx: typer.Context, job_id: JobId, address: JobAddress = None) -> None:
    """Ask the cluster to stop a job."""
    from pipelines.orchestration import submit as jobs

    address = _jobs_address(ctx, address)
    try:
        sent = jobs.stop(address, job_id)
        typer.echo(f"stop {'sent to' if sent else 'not needed for'} {job_id} ({jobs.status(address, job_id)})")
    except (ConnectionError, ValueError, RuntimeError) as err:
        exits.fail_on(err)


def submit_list(ctx: typer.Context, address: JobAddress = None) -> None:
    """List the cluster's jobs: id, status, entrypoint."""
    from pipelines.orchestration import submit as jobs

    address = _jobs_address(ctx, address)
    try:
        for info in jobs.client(address).list_jobs():
            typer.echo(f"{info.submission_id}  {info.status.value:9s}  {info.entrypoint}")
    except (ConnectionError, ValueError, RuntimeError) as err:
        exits.fail_on(err)


def rerun(
    run_id: Annotated[str, typer.Argument(help="MLflow run id of a workflow (parent) run or its train run.")],
    workdir: Workdir = "runs",
    tracking_uri: TrackingUri = "",
    address: Address = "",
    check: Annotated[bool, typer.Option(help="Compare the new run's per-step losses with the original's; exit 1 if they differ.")] = False,
) -> None:
    """Repeat a recorded run from MLflow alone: same config, seeds and data (checked by fingerprint)."""
    from pipelines.orchestration.rerun import RerunConfig, RerunMismatch, rerun_run

    cfg = RerunConfig(run_id=run_id, workdir=workdir, tracking_uri=tracking_uri, address=address, check=check)
    try:
        outcome = rerun_run(cfg, log=typer.echo)
    except RerunMismatch as err:
        exits.fail(str(err), exits.FAILURE)
    except (LookupError, ValueError, ConnectionError) as err:
        exits.fail_on(err)
    typer.echo(f"rerun of {run_id}: workflow run {outcome.parent_run_id}, train run {outcome.train_run_id}")


def schedule(
    overrides: Overrides = None,
    cron: Annotated[str, typer.Option(help="Five-field cron expression, UTC (e.g. '0 3 * * 1' = Mondays 03:00).")] = "0 3 * * 1",
    once: Annotated[bool, typer.Option(help="Fire once now and exit (what a cluster CronJob runs).")] = False,
    max_firings: Annotated[int, typer.Option(help="Stop after this many firings (0: run until interrupted).")] = 0,
    profile: Profile = "synthetic",
    config: ConfigFile = "",
    workdir: Workdir = "runs",
    tracking_uri: TrackingUri = "",
    address: Address = "",
    force: Annotated[bool, typer.Option(help="Redo every step (as `shg run --force`) even when the data fingerprint is unchanged since the last successful run.")] = False,
) -> None:
    """Fire the workflow on a cron schedule; unchanged data or a busy work dir skip (recorded in MLflow)."""
    from pipelines.orchestration.plan import WorkflowConfig
    from pipelines.orchestration.schedule import FiringFailed, ScheduleConfig, run_schedule
    from pipelines.orchestration.workflow import run_firing

    try:
        sched = ScheduleConfig(cron=cron, once=once, max_firings=max_firings)
    except ValueError as err:
        exits.fail(str(err), exits.USAGE)
    cfg = WorkflowConfig(
        profile=profile, config=config, workdir=workdir, tracking_uri=tracking_uri, address=address,
        force=force, overrides=tuple(overrides or ()), skip_unchanged=not force,
    )  # fmt: skip

    def fire(at):
        typer.echo(f"schedule: firing at {at:%Y-%m-%d %H:%M:%S} UTC")
        result = run_firing(cfg, log=typer.echo)
        if result.error:
            typer.echo(f"schedule: failed in step {result.failed_step}: {result.error}", err=True)
        else:
            typer.echo(f"schedule: {result.outcome} (workflow run {result.parent_run_id})")
        return result

    outcomes = run_schedule(sched, fire, on_wait=lambda at: typer.echo(f"schedule: next firing {at:%Y-%m-%d %H:%M} UTC"))
    failed = [o for o in outcomes if isinstance(o, FiringFailed) or getattr(o, "error", "")]
    if failed:  # a CronJob / RayJob must show the failure
        typer.echo(f"schedule: {len(failed)} of {len(outcomes)} firing(s) failed", err=True)
        raise typer.Exit(code=exits.FAILURE.code)


def tracking_server(
    host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1: this machine only; any other needs authentication).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    workdir: Workdir = "runs",
    backend_store_uri: Annotated[str, typer.Option(
        envvar="MLFLOW_BACKEND_STORE_URI",
        help="A team's store, e.g. postgresql+psycopg2://USER:PASSWORD@HOST:5432/mlflow (better from the env var: "
             "not in `ps`); default: the sqlite store under --workdir.")] = "",
    artifacts_destination: Annotated[str, typer.Option(
        envvar="MLFLOW_ARTIFACTS_DESTINATION",
        help="Where artifacts go, e.g. s3://bucket/prefix (endpoint and keys from MLFLOW_S3_ENDPOINT_URL, "
             "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); default: --workdir/mlartifacts.")] = "",
    auth: Annotated[bool, typer.Option(
        "--auth/--no-auth",
        help="Users log in (MLflow basic-auth; admin password from MLFLOW_AUTH_ADMIN_PASSWORD or the 0600 file "
             "admin.password in --state-dir). --no-auth: one person on this machine, --host 127.0.0.1 only.")] = True,
    state_dir: Annotated[str, typer.Option(
        help="Folder for the user store and secret files (mode 0700); default: --workdir/tracking-auth.")] = "",
    gate_user: Annotated[str, typer.Option(
        help="The account that owns the registered model: the only one that may move `champion` "
             "(password from SHG_TRACKING_GATE_PASSWORD or gate.password in --state-dir).")] = "gate",
    registered_model: Annotated[str, typer.Option(help="The registered model the gate account owns.")] = "stacked-hourglass",
) -> None:
    """Serve an MLflow store over HTTP (`mlflow server`, 1 worker, artifacts proxied, users log in);
    Ctrl-C or SIGTERM stops it and its workers."""
    from pipelines.orchestration.tracking_server import ServerSetupError, TrackingServerConfig, serve

    cfg = TrackingServerConfig(host=host, port=port, workdir=workdir, backend_store_uri=backend_store_uri,
                               artifacts_destination=artifacts_destination, auth=auth, state_dir=state_dir,
                               gate_user=gate_user, registered_model=registered_model)  # fmt: skip
    try:
        serve(cfg, log=typer.echo)
    except ServerSetupError as error:
        typer.echo(f"tracking-server: {error}", err=True)
        raise typer.Exit(code=exits.FAILURE.code) from None
