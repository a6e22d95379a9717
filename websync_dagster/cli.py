"""``websync sync|export|status|diff``: runs the Dagster jobs on the DAGSTER_HOME instance (so the UI shows
them) and prints what happened. Also takes the runbook's ``--export``, ``--status`` and ``--diff``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dagster import (
    DagsterEventType,
    ExecuteInProcessResult,
    Field,
    InitLoggerContext,
    JobDefinition,
    LoggerDefinition,
    logger,
)
from dotenv import load_dotenv

from websync_dagster.core.errors import SyncError
from websync_dagster.core.report import text_table
from websync_dagster.core.settings import load_settings
from websync_dagster.core.tables import DEFAULT_TABLES
from websync_dagster.defs.instance import WaitInterrupted, WaitTimeout, open_instance, run_tags, wait_for_pools

JOBS = {"sync": "websync_job", "export": "export_job", "status": "status_job", "diff": "diff_job"}
#: exit codes: a run failed; bad configuration; interrupted (Ctrl-C, as a shell reports SIGINT)
FAILED, BAD_CONFIG, INTERRUPTED = 1, 2, 130


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="websync", description=__doc__)
    parser.add_argument("mode", nargs="?", choices=sorted(JOBS), help="default: sync")
    for flag in ("export", "status", "diff"):
        parser.add_argument(f"--{flag}", dest="flag", action="append_const", const=flag,
                            help=f"same as 'websync {flag}' (the runbook's flag)")
    parser.add_argument("--env-file", default=".env", help="dotenv file (the environment wins); default .env")
    parser.add_argument("--quiet", action="store_true", help="only the final table")
    parser.add_argument("--debug", action="store_true", help="Dagster's own log, with the stack trace of a failure")
    args = parser.parse_args(argv)
    flags = args.flag or []
    if len(flags) > 1 or (flags and args.mode and args.mode != flags[0]):
        parser.error("give one mode")
    args.mode = args.mode or (flags[0] if flags else "sync")
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


def summary_rows(mode: str, result: ExecuteInProcessResult) -> list[dict[str, Any]]:
    """The table printed after a run."""
    if mode == "sync":
        return [
            {"table": table, "prod before": m["prod_rows_before"], "prod after": m["prod_rows_after"],
             "inserted": m["inserted"], "already present": m["already_present"],
             "skipped (other key)": m["skipped_other_key"], "rejected": m["rejected"],
             "MB": round(m["bytes"] / 1e6, 2), "s": m["seconds"], "mode": m["mode"]}
            for table, m in _materializations(result, "prod_upserted")
        ]
    if mode == "export":
        return [{"table": t, "rows": m["rows"], "MB": round(m["bytes"] / 1e6, 2), "path": m["export_path"]}
                for t, m in _materializations(result, "export")]
    if mode == "status":
        counts = result.output_for_node("prod_status") if result.success else {}
        return [{"table": t, "prod rows": n} for t, n in counts.items()]
    return list(result.output_for_node("dev_prod_diff")) if result.success else []


def failures(result: ExecuteInProcessResult) -> list[str]:
    """One line per problem the run's steps reported."""
    lines = []
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_FAILURE:
            data = event.step_failure_data
            if data.user_failure_data and data.user_failure_data.description:
                lines.extend(data.user_failure_data.description.splitlines())  # one line per table
            elif data.error:
                lines.append(f"{event.step_key}: {data.error.message.strip().splitlines()[0]}")
            else:
                lines.append(f"{event.step_key} failed")
    return lines


def one_line_per_cause(lines: Sequence[str]) -> list[str]:
    """``<table>: <cause>`` lines with the same cause become one line naming the tables (an unreachable
    server fails every table the same way); other lines are kept once each, in order."""
    tables_by_cause: dict[str, list[str]] = {}
    for line in lines:
        table, sep, cause = line.partition(": ")
        if sep and table in DEFAULT_TABLES:
            tables_by_cause.setdefault(cause, []).append(table)
        else:
            tables_by_cause.setdefault(line, [])
    return [f"{', '.join(dict.fromkeys(tables))}: {cause}" if tables else cause
            for cause, tables in tables_by_cause.items()]


class _MessagesOnly(logging.Handler):
    """What the steps say (progress, warnings), one plain line each; Dagster's own events (step started,
    failed with its stack trace...) are left out: the CLI prints its own line per failure."""

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        if meta.get("dagster_event") is not None:
            return
        text = meta.get("orig_message", record.getMessage())
        prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        print(f"websync: {prefix}{text}", file=sys.stderr, flush=True)


@logger(config_schema={"log_level": Field(str, is_required=False, default_value="INFO")},
        description="The step's messages only, one line each (websync's CLI without --debug).")
def messages_logger(init_context: InitLoggerContext) -> logging.Logger:
    log = logging.Logger("websync", level=init_context.logger_config["log_level"])
    log.addHandler(_MessagesOnly())
    return log


def job_for_cli(job: JobDefinition, debug: bool) -> JobDefinition:
    """The job as the CLI runs it: Dagster's console log with --debug, otherwise the steps' messages only."""
    if debug:
        return job
    loggers: dict[str, LoggerDefinition] = {"console": messages_logger}
    return job.with_logger_defs(loggers)


def job_pools(job: JobDefinition) -> list[str]:
    """The concurrency pools the job's steps take a slot of (prod_sync for the sync and export jobs)."""
    return sorted({op.pool for op in job.graph.iterate_op_defs() if op.pool})


def say(line: str) -> None:
    print(f"websync: {line}", file=sys.stderr, flush=True)


def error(line: str) -> None:
    print(f"websync: error: {line}", file=sys.stderr, flush=True)


def run(mode: str, *, env_file: str = ".env", quiet: bool = False, debug: bool = False) -> int:
    """Run one mode's job; return the process exit code."""
    try:
        settings = load_settings(env_file=env_file)
    except SyncError as exc:
        error(str(exc))
        return BAD_CONFIG
    if env_file and Path(env_file).is_file():
        load_dotenv(env_file, override=False)  # the job's resource reads the same variables
    instance, home = open_instance()
    from websync_dagster.definitions import defs

    job = defs().resolve_job_def(JOBS[mode])
    redact = settings.redactor()
    if not quiet:
        where = ", ".join(f"{k}={v}" for k, v in settings.describe().items())
        print(f"websync {mode}: {where}; Dagster instance {home}", file=sys.stderr)
    try:
        wait_for_pools(instance, job_pools(job), settings.wait_s, say)
    except WaitTimeout as exc:
        error(str(exc))
        return FAILED
    except WaitInterrupted as exc:
        error(str(exc))
        return INTERRUPTED
    log_level = "WARNING" if quiet else "INFO"
    result = job_for_cli(job, debug).execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={"websync/cli": mode, **run_tags()},
    )
    rows = summary_rows(mode, result)
    if rows:
        print(redact(text_table(rows)))
    if result.success:
        if not quiet:
            print(f"websync {mode}: run {result.run_id} succeeded", file=sys.stderr)
        return 0
    for line in one_line_per_cause(failures(result)) or [f"run {result.run_id} failed"]:
        error(redact(line))
    if not quiet:
        print(f"websync {mode}: run {result.run_id} failed", file=sys.stderr)
    return FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run(args.mode, env_file=args.env_file, quiet=args.quiet, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
