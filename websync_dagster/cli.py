"""``websync sync|export|status|diff``: runs the Dagster jobs on the DAGSTER_HOME instance (so the UI shows
them) and prints what happened. Also takes the runbook's ``--export``, ``--status`` and ``--diff``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def collector_paused(*, then_freeze: bool) -> Iterator[None]:
    """No garbage collection inside (unless the caller had it off already), for building what lives as long
    as the process: Dagster and the code location's ~200k objects when imported, Dagster's storage when the
    first instance is opened. The collector's passes over them find nothing to free (they were ~0.2 s of a
    no-op ``websync sync``). ``then_freeze``: every object there is then is left out of the collector's
    passes for good (``gc.freeze``), before it is turned on again; else its first pass goes through all that
    was built meanwhile."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if then_freeze:
            gc.freeze()
        if collecting:
            gc.enable()


# frozen: what exists when the CLI is imported is modules and what they hold
with collector_paused(then_freeze=True):
    from dagster import (
        DagsterEventType,
        DagsterInstance,
        ExecuteInProcessResult,
        Field,
        InitLoggerContext,
        JobDefinition,
        LoggerDefinition,
        logger,
    )

    from websync_dagster.core.errors import ConfigError, SyncError, first_line
    from websync_dagster.core.redact import Redactor
    from websync_dagster.core.report import text_table
    from websync_dagster.core.settings import LocationOptions, Settings, load_location_options, load_settings, reveal
    from websync_dagster.core.tables import DECLARED_DEPS, DEFAULT_TABLES, parse_tables
    from websync_dagster.definitions import build_definitions
    from websync_dagster.defs.code_location import code_location_tags
    from websync_dagster.defs.failures import ERRORS_KEY, Problem, problem_line
    from websync_dagster.defs.instance import open_instance
    from websync_dagster.defs.log_events import event_of
    from websync_dagster.defs.pool_wait import WaitInterrupted, WaitTimeout, wait_for_pools
    from websync_dagster.defs.run_processes import run_tags
    from websync_dagster.engine.dry_run import dry_run
    from websync_dagster.engine.events import TableFailed
    from websync_dagster.engine.run import run_diff
    from websync_dagster.terminal import MessageView

JOBS = {"sync": "websync_job", "export": "export_job", "status": "status_job", "diff": "diff_job"}
RUNBOOK_FLAGS = {"--export": "export", "--status": "status", "--diff": "diff"}
#: options that take a value (so that the value is not mistaken for the command)
VALUE_OPTIONS = ("--env-file", "--tables")
DEFAULT_ENV_FILE = ".env"
#: exit codes: a run failed; bad configuration; interrupted (Ctrl-C, as a shell reports SIGINT)
FAILED, BAD_CONFIG, INTERRUPTED = 1, 2, 130


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env-file", help="dotenv file read before the environment, which wins (default: .env when "
                        "there is one)")
    common.add_argument("--json", action="store_true",
                        help="the final table as JSON on stdout (one object per table); messages stay on stderr")
    common.add_argument("--quiet", action="store_true", help="only the final table and errors")
    common.add_argument("--debug", action="store_true", help="Dagster's own log, with the stack trace of a failure")
    return common


def _tables_option() -> argparse.ArgumentParser:
    tables = argparse.ArgumentParser(add_help=False)
    tables.add_argument("--tables", help=f"comma list of tables (default WEBSYNC_TABLES, else "
                        f"{','.join(DEFAULT_TABLES)})")
    return tables


def build_parser() -> argparse.ArgumentParser:
    common, tables = _common_options(), _tables_option()
    parser = argparse.ArgumentParser(
        prog="websync", description="Insert-only sync of dev's crawled content into prod, run as Dagster jobs on "
        "the DAGSTER_HOME instance (so the UI shows every run). The runbook's --export, --status and --diff work too.",
        epilog="Exit status: 0 every table completed (rejected rows are reported, not failures); 1 a table failed; "
        "2 bad configuration; 130 interrupted (Ctrl-C, SIGINT); 143 stopped by SIGTERM (cron, systemd, docker stop).")
    parser.add_argument("--version", action="version", version=f"websync {package_version()}")
    commands = parser.add_subparsers(dest="mode", metavar="{sync,export,status,diff}")
    sync = commands.add_parser("sync", parents=[common, tables], help="export the rows prod lacks and insert them "
                               "(default)", description="websync_job: per table in FK order, export from dev the rows "
                               "prod lacks and insert them into prod, insert-only.")
    sync.add_argument("--dry-run", action="store_true", help="read both sides and say per table what would be "
                      "inserted, skipped and sent; write nothing to prod and run no Dagster job")
    commands.add_parser("export", parents=[common, tables], help="every row of every table to CSV, no prod needed",
                        description="export_job: every row and column of each table to CSV under WEBSYNC_EXPORT_DIR.")
    commands.add_parser("status", parents=[common], help="prod's row counts and crawl sources",
                        description="status_job: prod's row counts and web_sources.")
    commands.add_parser("diff", parents=[common, tables], help="dev vs prod per table",
                        description="diff_job: per table dev count, prod count, missing in prod, only in prod, "
                        "changed.")
    return parser


def package_version() -> str:
    try:
        return metadata.version("websync-dagster")
    except metadata.PackageNotFoundError:
        return "unknown"


def _command_in(argv: Sequence[str]) -> tuple[int, str] | None:
    """Where the command is in ``argv`` (the first word that is not an option or an option's value)."""
    skip = False
    for i, word in enumerate(argv):
        if skip:
            skip = False
        elif word in VALUE_OPTIONS:
            skip = True
        elif not word.startswith("-"):
            return i, word
    return None


def normalised(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """The command first (``sync`` when none is given), the runbook's ``--export``/``--status``/``--diff``
    turned into their command, so that options may come before or after it."""
    flags = [RUNBOOK_FLAGS[a] for a in argv if a in RUNBOOK_FLAGS]
    rest = [a for a in argv if a not in RUNBOOK_FLAGS]
    found = _command_in(rest)
    command = found[1] if found else None
    if len(flags) > 1 or (flags and command and command != flags[0]):
        parser.error("give one mode")
    if found:
        del rest[found[0]]
    if command is None and any(a in ("-h", "--help", "--version") for a in rest):
        return rest
    return [command or (flags[0] if flags else "sync"), *rest]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(normalised(argv, parser))
    args.dry_run = getattr(args, "dry_run", False)
    args.tables = getattr(args, "tables", None)
    return args


def _materializations(result: ExecuteInProcessResult, suffix: str) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for event in result.all_events:
        if event.event_type != DagsterEventType.ASSET_MATERIALIZATION:
            continue
        materialization = event.step_materialization_data.materialization
        path = materialization.asset_key.path
        if path[-1] == suffix:
            rows.append((path[0], {k: v.value for k, v in materialization.metadata.items()}))
    order = {t: i for i, t in enumerate(DEFAULT_TABLES)}
    return sorted(rows, key=lambda r: order.get(r[0], len(order)))


def summary_rows(mode: str, result: ExecuteInProcessResult, *, full: bool = False) -> list[dict[str, Any]]:
    """The table printed after a run; ``full``: every metadata field per table (``--json``)."""
    if mode in ("sync", "export"):
        materialized = _materializations(result, "prod_upserted" if mode == "sync" else "export")
        if full:
            return [{"table": table, **m} for table, m in materialized]
        if mode == "export":
            return [{"table": t, "rows": m["rows"], "MB": round(m["bytes"] / 1e6, 2), "path": m["export_path"]}
                    for t, m in materialized]
        return [
            {"table": table, "prod before": m["prod_rows_before"], "prod after": m["prod_rows_after"],
             "inserted": m["inserted"], "already present": m["already_present"],
             "skipped (other key)": m["skipped_other_key"], "rejected": m["rejected"],
             "MB": round(m["bytes"] / 1e6, 2), "s": m["seconds"], "mode": m["mode"]}
            for table, m in materialized
        ]
    if mode == "status":
        counts = result.output_for_node("prod_status") if result.success else {}
        rows = [{"table": t, "prod rows": n} for t, n in counts.items()]
        if full and result.success:  # the sources with prod's own column names (url or base_url ...)
            sources = result.output_for_node("prod_status", "web_sources")
            row = next((r for r in rows if r["table"] == "web_sources"), None)
            if row is None:  # web_sources left out of WEBSYNC_TABLES: its sources are still shown
                rows.append(row := {"table": "web_sources"})
            row["sources"] = sources
        return rows
    return list(result.output_for_node("dev_prod_diff")) if result.success else []


def problems(result: ExecuteInProcessResult) -> list[Problem]:
    """The problems the run's steps reported (``{"table": ..., "error": ...}``), from each step failure's
    metadata (defs/failures.py); a failure without it gives problems of no table."""
    found: list[Problem] = []
    for event in result.all_events:
        if event.event_type != DagsterEventType.STEP_FAILURE:
            continue
        data = event.step_failure_data
        user = data.user_failure_data
        listed = user.metadata.get(ERRORS_KEY) if user is not None else None
        if listed is not None:
            found.extend(listed.value)
        elif user is not None and user.description:  # a Failure raised elsewhere: a problem per line, of no table
            found.extend({"table": None, "error": line} for line in user.description.splitlines())
        elif data.error:  # an error the steps did not turn into a problem: say what it came from
            root = data.error
            while root.cause is not None:
                root = root.cause
            found.append({"table": None, "error": f"{event.step_key}: {first_line(root.message)}"})
        else:
            found.append({"table": None, "error": f"{event.step_key} failed"})
    return found


def failures(result: ExecuteInProcessResult) -> list[str]:
    """One line per problem the run's steps reported."""
    return [problem_line(p) for p in problems(result)]


def failure_chains(result: ExecuteInProcessResult) -> list[str]:
    """Each failed step's error with its causes, stack traces included (``--debug``)."""
    return [f"{event.step_key} failed:\n{event.step_failure_data.error.to_string()}"
            for event in result.all_events
            if event.event_type == DagsterEventType.STEP_FAILURE and event.step_failure_data.error]


def by_cause(found: Sequence[Problem]) -> list[tuple[list[str], str]]:
    """The problems grouped by their error, in order: each error once, with the tables it stopped (none for
    a problem of no table)."""
    tables_by_cause: dict[str, list[str]] = {}
    for p in found:
        tables = tables_by_cause.setdefault(p["error"], [])
        if p["table"] and p["table"] not in tables:
            tables.append(p["table"])
    return [(tables, cause) for cause, tables in tables_by_cause.items()]


def one_line_per_cause(found: Sequence[Problem]) -> list[str]:
    """Tables stopped by the same error are one line naming them (an unreachable server fails every table
    the same way); other problems are kept once each, in order."""
    return [f"{', '.join(tables)}: {cause}" if tables else cause for tables, cause in by_cause(found)]


class _MessagesOnly(logging.Handler):
    """What the steps say (progress, warnings) goes to the view, one message each; Dagster's own events (step
    started, failed with its stack trace...) are left out: the CLI prints its own line per failure."""

    def __init__(self, view: MessageView) -> None:
        super().__init__()
        self.view = view

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        if meta.get("dagster_event") is not None:
            return
        event = event_of(record)
        if isinstance(event, TableFailed):  # the CLI prints each failure once the run is over, one per cause
            return
        if event is not None:
            self.view.show(event)
            return
        text = meta.get("orig_message", record.getMessage())
        if record.levelno >= logging.WARNING:
            self.view.line(f"websync: {record.levelname.lower()}: {text}")
        else:
            self.view.message(text)


def messages_logger(view: MessageView) -> LoggerDefinition:
    """The steps' messages only, shown by ``view`` (websync's CLI without --debug)."""

    @logger(config_schema={"log_level": Field(str, is_required=False, default_value="INFO")},
            description="The step's messages only, one line each (websync's CLI without --debug).")
    def websync_messages(init_context: InitLoggerContext) -> logging.Logger:
        log = logging.Logger("websync", level=init_context.logger_config["log_level"])
        log.addHandler(_MessagesOnly(view))
        return log

    return websync_messages


def job_for_cli(job: JobDefinition, debug: bool, view: MessageView) -> JobDefinition:
    """The job as the CLI runs it: Dagster's console log with --debug, otherwise the steps' messages only."""
    if debug:
        return job
    loggers: dict[str, LoggerDefinition] = {"console": messages_logger(view)}
    return job.with_logger_defs(loggers)


#: how messages reach the user: live progress bars on a terminal, plain lines otherwise
VIEW = MessageView()


def say(line: str) -> None:
    VIEW.line(f"websync: {line}")


def error(line: str) -> None:
    VIEW.line(f"websync: error: {line}")


def env_file_to_read(env_file: str | None) -> str | None:
    """The dotenv file to read: the one named (it must exist), else ``.env`` when there is one."""
    if env_file is None:
        return DEFAULT_ENV_FILE if Path(DEFAULT_ENV_FILE).is_file() else None
    if not Path(env_file).exists():
        raise ConfigError(f"--env-file {env_file} does not exist")
    return env_file


def prepare(mode: str, env_file: str | None, tables: str | None) -> tuple[Settings, LocationOptions]:
    """The run's settings and the code location's options, loaded once, ``--tables`` winning over WEBSYNC_TABLES:
    the job is built from them (``run_job``), nothing reads the environment after."""
    path = env_file_to_read(env_file)
    overrides = {"WEBSYNC_TABLES": ",".join(parse_tables(tables))} if tables is not None else None
    options = load_location_options(env_file=path, overrides=overrides)
    return load_settings(env_file=path, require_prod=mode != "export", overrides=overrides), options


def print_rows(rows: Sequence[dict[str, Any]], as_json: bool, redact: Redactor) -> None:
    if as_json:
        print(redact(json.dumps(list(rows), ensure_ascii=False, default=str)))
    elif rows:
        print(redact(text_table(rows)))


def run(mode: str, *, env_file: str | None = None, quiet: bool = False, debug: bool = False, as_json: bool = False,
        tables: str | None = None, dry_run_only: bool = False, own_process: bool = False) -> int:
    """Run one mode's job (or the dry run); return the process exit code. ``own_process``: the run is what
    this process is for (``main`` with the process's own command line): the heap built until the instance
    is open is frozen (``collector_paused``)."""
    VIEW.attach(sys.stderr)
    try:
        settings, options = prepare(mode, env_file, tables)
    except SyncError as exc:
        error(str(exc))
        return BAD_CONFIG
    redact = settings.redactor()
    if not quiet:
        where = ", ".join(f"{k}={v}" for k, v in settings.describe().items())
        say(f"{mode}{' --dry-run' if dry_run_only else ''}: {where}")
    if dry_run_only:
        return run_dry(settings, as_json, redact)
    with collector_paused(then_freeze=own_process):  # a test's process would keep its garbage frozen
        instance, home = open_instance(settings.dagster_home, reveal(settings.dagster_pg_url))
    with instance:  # its storages closed once the run is recorded
        if tables is not None and mode == "sync" and not quiet:
            for line in left_out_dependencies(settings, home):
                say(f"note: {line}")
        return run_job(mode, settings, options, instance, home, quiet=quiet, debug=debug, as_json=as_json)


def run_job(mode: str, settings: Settings, options: LocationOptions, instance: DagsterInstance, home: Path, *,
            quiet: bool, debug: bool, as_json: bool) -> int:
    """The mode's job, built with the CLI's settings and options (the code location's definitions, with what the
    CLI loaded), run on the instance once no other run holds its pools; the table and the errors printed."""
    definitions = build_definitions(options, settings)
    job = definitions.resolve_job_def(JOBS[mode])
    try:
        claim = wait_for_pools(instance, home, job, settings.wait_s, say)
    except WaitTimeout as exc:
        error(str(exc))
        return FAILED
    except WaitInterrupted as exc:
        error(str(exc))
        return INTERRUPTED
    try:
        # the run is created with the id its pools' slots were claimed for, filed under its job in the UI
        with claim:
            result = job_for_cli(job, debug, VIEW).execute_in_process(
                instance=instance,
                raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING" if quiet else "INFO"}}}},
                tags={"websync/cli": mode, **run_tags(),
                      **code_location_tags(definitions.get_repository_def().name)},
                run_id=claim.run_id,
            )
    finally:
        VIEW.close()
    return report(mode, result, home, quiet=quiet, as_json=as_json, redact=settings.redactor(), debug=debug)


def report(mode: str, result: ExecuteInProcessResult, home: Path, *, quiet: bool, as_json: bool,
           redact: Redactor, debug: bool = False) -> int:
    """The run's table on stdout, a line per problem on stderr (with ``debug``, after each step failure's
    whole chain of causes and their stack traces); the exit code."""
    found = problems(result)
    rows = summary_rows(mode, result, full=as_json)
    if as_json:
        rows = [*rows, *error_rows(found, {r.get("table") for r in rows})]
    print_rows(rows, as_json, redact)
    if result.success:
        if not quiet:
            say(f"{mode}: run {result.run_id} succeeded (Dagster instance {home})")
        return 0
    if debug:
        for chain in failure_chains(result):
            VIEW.line(redact(chain))
    for line in one_line_per_cause(found) or [f"run {result.run_id} failed"]:
        error(redact(line))
    if not quiet:
        say(f"{mode}: run {result.run_id} failed (Dagster instance {home})")
    return FAILED


def error_rows(found: Sequence[Problem], reported: set[Any]) -> list[dict[str, str]]:
    """``{"table": ..., "error": ...}`` for each table a problem names and the table rows do not hold."""
    return [{"table": table, "error": cause} for tables, cause in by_cause(found) for table in tables
            if table not in reported]


def run_dry(settings: Settings, as_json: bool, redact: Redactor) -> int:
    """``sync --dry-run``: the engine's dry run, no Dagster run (nothing is materialised)."""
    try:
        tables = dry_run(settings)
    except SyncError as exc:
        error(redact(str(exc)))
        return FAILED
    if as_json:
        print_rows([t.to_dict() for t in tables], True, redact)
    else:
        print_rows([{"table": t.table, "would insert": t.would_insert, "already present": t.already_present,
                     "skipped (other key)": sum(t.skipped_by_key.values()), "MB": round(t.bytes / 1e6, 2),
                     "MB on an SSH link": round(t.bytes_compressed / 1e6, 2), "would fail": t.would_fail or ""}
                    for t in tables], False, redact)
    for t in tables:
        if t.type_mismatches:
            say(f"{t.table}: type differences: {'; '.join(t.type_mismatches)}")
        for warning in t.warnings:
            say(f"{t.table}: {warning}")
    return FAILED if any(t.would_fail for t in tables) else 0


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


#: the signals that stop a run; a run they stopped exits with 128 + the signal's number, as a shell reports it
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_signals_noted() -> Iterator[list[int]]:
    """SIGTERM (cron, systemd, docker stop) stops a run as Ctrl-C does: it raises KeyboardInterrupt, and while
    a job runs Dagster's own SIGINT handler takes both (the step is interrupted). The stop signals that
    arrived are in the list once the block ends, read from the signal wakeup fd (written whichever Python
    handler runs). Outside the main thread, nothing is changed or noted."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    on_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    try:
        yield noted
    finally:
        signal.set_wakeup_fd(wakeup)
        signal.signal(signal.SIGTERM, on_term)
        with contextlib.suppress(BlockingIOError):
            noted.extend(n for n in os.read(read_end, 1024) if n in STOP_SIGNALS)
        os.close(read_end)
        os.close(write_end)


def main(argv: Sequence[str] | None = None) -> int:
    """``argv`` None: the process's own command line (the ``websync`` script, ``python -m websync_dagster.cli``),
    and the process ends when this returns (see ``keep_heap_from_collector``). A run that Ctrl-C or SIGTERM
    stopped exits with 130 or 143."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with stop_signals_noted() as noted:
        try:
            code = run(args.mode, env_file=args.env_file, quiet=args.quiet, debug=args.debug, as_json=args.json,
                       tables=args.tables, dry_run_only=args.dry_run, own_process=argv is None)
        except KeyboardInterrupt:  # outside the job (inside, it is the interrupted table's failure)
            error("interrupted")
            code = INTERRUPTED
    if code != 0 and noted:
        code = 128 + noted[-1]
    if argv is None:
        keep_heap_from_collector()
    return code


def keep_heap_from_collector() -> None:
    """Every object there is now left out of the garbage collector's passes (``gc.freeze``), once the run is
    over, so that the interpreter's own collections at exit skip the heap: they were 0.4-0.7 s of a no-op
    ``websync sync``. Only where the process ends with the run (a test calling ``main`` would keep its
    garbage). What is frozen is still freed at exit when nothing refers to it any more; only reference
    cycles are not looked for, and the process ending frees their memory. No file is left to them: the
    run's files are closed when it ends, the instance is closed, the messages are flushed as they are
    printed, and logging flushes its handlers at exit."""
    gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
