"""One mode's run: the settings loaded once, the instance opened, the job (built from the code location's
definitions) run once no other run holds its pools, and the result reported; or ``sync --dry-run``, which
runs no Dagster job. Imported when a run needs it (``process.main``): this is what imports Dagster."""

from __future__ import annotations

import sys
from pathlib import Path

from dagster import DagsterInstance

from websync_dagster.cli.codes import BAD_CONFIG, FAILED, INTERRUPTED
from websync_dagster.cli.display import job_for_cli
from websync_dagster.cli.heap import collector_paused
from websync_dagster.cli.results import print_rows, report
from websync_dagster.cli.terminal import MessageView
from websync_dagster.core.errors import ConfigError, SyncError
from websync_dagster.core.redact import Redactor
from websync_dagster.core.settings import LocationOptions, Settings, load_location_options, load_settings, reveal
from websync_dagster.core.tables import DECLARED_DEPS, DEFAULT_TABLES, parse_tables
from websync_dagster.definitions import build_definitions
from websync_dagster.defs.code_location import code_location_tags
from websync_dagster.defs.instance import open_instance
from websync_dagster.defs.pool_wait import WaitInterrupted, WaitTimeout, wait_for_pools
from websync_dagster.defs.run_processes import run_tags
from websync_dagster.defs.undo import UNDO_OP
from websync_dagster.engine import ahead
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.dry_run import dry_run
from websync_dagster.engine.run import run_diff
from websync_dagster.engine.run_id import new_run_id
from websync_dagster.engine.undo.apply import text_row, undo_run

JOBS = {"sync": "websync_job", "export": "export_job", "status": "status_job", "diff": "diff_job", "undo": "undo_job"}
DEFAULT_ENV_FILE = ".env"
#: modes whose run reads dev and prod: their connections and plans are opened while Dagster starts (engine/ahead.py)
OPENED_AHEAD = ("sync", "diff")


def env_file_to_read(env_file: str | None) -> str | None:
    """The dotenv file to read: the one named (it must exist), else ``.env`` when there is one."""
    if env_file is None:
        return DEFAULT_ENV_FILE if Path(DEFAULT_ENV_FILE).is_file() else None
    if not Path(env_file).exists():
        raise ConfigError(f"--env-file {env_file} does not exist")
    return env_file


def prepare(mode: str, env_file: str | None, tables: str | None,
            update_newer: list[str] | None = None) -> tuple[Settings, LocationOptions]:
    """The run's settings and the code location's options, loaded once, ``--tables`` winning over WEBSYNC_TABLES
    and ``--update-newer`` over WEBSYNC_UPDATE_NEWER: the job is built from them (``run_job``), nothing reads the
    environment after."""
    path = env_file_to_read(env_file)
    overrides = {"WEBSYNC_TABLES": ",".join(parse_tables(tables))} if tables is not None else {}
    if update_newer is not None:
        overrides["WEBSYNC_UPDATE_NEWER"] = ",".join(update_newer)
    options = load_location_options(env_file=path, overrides=overrides)
    return load_settings(env_file=path, require_prod=mode != "export", overrides=overrides), options


def run(mode: str, *, env_file: str | None = None, quiet: bool = False, debug: bool = False, as_json: bool = False,
        tables: str | None = None, dry_run_only: bool = False, own_process: bool = False,
        view: MessageView | None = None, update_newer: list[str] | None = None, run_id: str | None = None) -> int:
    """Run one mode's job (or the dry run); return the process exit code. ``own_process``: the run is what
    this process is for (``main`` with the process's own command line): the heap built until the instance
    is open is frozen (``collector_paused``). ``view``: where the messages go (a new one on stderr unless
    given), attached to stderr for the run."""
    with (view or MessageView()).attached(sys.stderr) as shown:
        try:
            settings, options = prepare(mode, env_file, tables, update_newer)
        except SyncError as exc:
            shown.error(str(exc))
            return BAD_CONFIG
        redact = settings.redactor()
        if not quiet:
            where = ", ".join(f"{k}={v}" for k, v in settings.describe().items())
            shown.say(f"{mode}{' --dry-run' if dry_run_only else ''}: {where}")
        if dry_run_only and mode == "undo":
            return run_undo_dry(settings, run_id or "", as_json, redact, shown)
        if dry_run_only:
            return run_dry(settings, as_json, redact, shown)
        if mode in OPENED_AHEAD:
            ahead.open_ahead(settings)  # while the instance opens and the run is created
        try:
            with collector_paused(then_freeze=own_process):  # a test's process would keep its garbage frozen
                instance, home = open_instance(settings.dagster_home, reveal(settings.dagster_pg_url))
            with instance:  # its storages closed once the run is recorded
                if tables is not None and mode == "sync" and not quiet:
                    for line in left_out_dependencies(settings, home):
                        shown.say(f"note: {line}")
                return run_job(mode, settings, options, instance, home, shown, quiet=quiet, debug=debug,
                               as_json=as_json, undo_of=run_id)
        finally:
            ahead.drop()


def run_job(mode: str, settings: Settings, options: LocationOptions, instance: DagsterInstance, home: Path,
            view: MessageView, *, quiet: bool, debug: bool, as_json: bool, undo_of: str | None = None) -> int:
    """The mode's job, built with the CLI's settings and options (the code location's definitions, with what the
    CLI loaded), run on the instance once no other run holds its pools; the table and the errors printed."""
    definitions = build_definitions(options, settings)
    job = definitions.resolve_job_def(JOBS[mode])
    try:
        claim = wait_for_pools(instance, home, job, settings.wait_s, view.say)
    except WaitTimeout as exc:
        view.error(str(exc))
        return FAILED
    except WaitInterrupted as exc:
        view.error(str(exc))
        return INTERRUPTED
    try:
        # the run is created with the id its pools' slots were claimed for, filed under its job in the UI
        with claim:
            result = job_for_cli(job, debug, view).execute_in_process(
                instance=instance,
                raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING" if quiet else "INFO"}}},
                            **({"ops": {UNDO_OP: {"config": {"run_id": undo_of}}}} if mode == "undo" else {})},
                tags={"websync/cli": mode, **run_tags(),
                      **code_location_tags(definitions.get_repository_def().name)},
                run_id=claim.run_id,
            )
    finally:
        view.close()
    return report(mode, result, home, view, quiet=quiet, as_json=as_json, redact=settings.redactor(), debug=debug)


def run_dry(settings: Settings, as_json: bool, redact: Redactor, view: MessageView) -> int:
    """``sync --dry-run``: the engine's dry run, no Dagster run (nothing is materialised)."""
    try:
        tables = dry_run(settings)
    except SyncError as exc:
        view.error(redact(str(exc)))
        return FAILED
    if as_json:
        print_rows([t.to_dict() for t in tables], True, redact)
    else:
        updates = any(t.would_update is not None for t in tables)
        print_rows([{"table": t.table, "would insert": t.would_insert,
                     **({"would update": t.would_update or 0, "prod newer kept": t.prod_newer_kept or 0}
                        if updates else {}),
                     "already present": t.already_present,
                     "skipped (other key)": sum(t.skipped_by_key.values()), "MB": round(t.bytes / 1e6, 2),
                     "MB on an SSH link": round(t.bytes_compressed / 1e6, 2), "would fail": t.would_fail or ""}
                    for t in tables], False, redact)
    for t in tables:
        if t.type_mismatches:
            view.say(f"{t.table}: type differences: {'; '.join(t.type_mismatches)}")
        for warning in t.warnings:
            view.say(f"{t.table}: {warning}")
    return FAILED if any(t.would_fail for t in tables) else 0


def run_undo_dry(settings: Settings, run_id: str, as_json: bool, redact: Redactor, view: MessageView) -> int:
    """``undo RUN_ID --dry-run``: what undo would do, per table, and the rows it would leave alone; no Dagster run."""
    try:
        with SyncContext(settings) as ctx:
            tables = undo_run(ctx, run_id, undo_run_id=new_run_id(), dry_run=True)
    except SyncError as exc:
        view.error(redact(str(exc)))
        return FAILED
    print_rows([t.to_dict() if as_json else text_row(t.to_dict()) for t in tables], as_json, redact)
    return 0


def left_out_dependencies(settings: Settings, home: Path) -> list[str]:
    """For ``--tables``: each table it leaves out that a chosen table references and whose rows prod lacks."""
    chosen = set(settings.tables)
    left_out = [d for d in DEFAULT_TABLES if d not in chosen and any(d in DECLARED_DEPS[t] for t in chosen)]
    if not left_out:
        return []
    try:
        diffs = run_diff(settings.model_copy(update={"tables": tuple(left_out)}),
                         cache_dir=home / "websync" / "diff-cache")
    except SyncError as exc:
        return [f"could not check whether prod has the rows of {', '.join(left_out)}: {exc}"]
    return [f"{d.table} is not in --tables and prod lacks {d.missing_in_prod} of its rows: rows of "
            f"{', '.join(t for t in settings.tables if d.table in DECLARED_DEPS[t])} that reference them will be "
            f"rejected or lose the reference (add {d.table} to --tables)"
            for d in diffs if d.missing_in_prod]
