"""A finished run read back into what the CLI prints: the table (from the steps' materializations or
outputs), the problems the step failures carry (defs/failures.py), one line per cause; and the printing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from websync_dagster.cli.codes import FAILED
from websync_dagster.cli.terminal import MessageView
from websync_dagster.core.errors import first_line
from websync_dagster.core.redact import Redactor
from websync_dagster.core.report import text_table
from websync_dagster.core.tables import DEFAULT_TABLES
from websync_dagster.defs.failures import ERRORS_KEY, Problem, problem_line
from websync_dagster.engine.undo.apply import text_row

if TYPE_CHECKING:
    from dagster import ExecuteInProcessResult


def _plain(value: Any) -> Any:
    """A metadata value as JSON can hold it: a table's records as objects (``update_changes``), else its value."""
    records = getattr(value, "records", None)
    if records is not None:
        return [dict(record.data) for record in records]
    return value.value


def _materializations(result: ExecuteInProcessResult, suffix: str) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        path = materialization.asset_key.path
        if path[-1] == suffix:
            rows.append((path[0], {k: _plain(v) for k, v in materialization.metadata.items()}))
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
        updates = any(m.get("update_newer") for _, m in materialized)
        return [
            {"table": table, "prod before": m["prod_rows_before"], "prod after": m["prod_rows_after"],
             "inserted": m["inserted"], **({"updated": m["updated"], "prod newer kept": m.get("prod_newer_kept", 0),
                                            "same version differs": m.get("same_version_differs")}
                                           if updates else {}),
             "already present": m["already_present"],
             "skipped (other key)": m["skipped_other_key"], "rejected": m["rejected"],
             "MB": round(m["bytes"] / 1e6, 2), "s": m["seconds"], "mode": m["mode"]}
            for table, m in materialized
        ]
    if mode == "undo":
        rows = result.output_for_node("undo_run") if result.success else []
        return rows if full else [text_row(r) for r in rows]
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
    for event in result.get_step_failure_events():
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
            for event in result.get_step_failure_events() if event.step_failure_data.error]


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


def error_rows(found: Sequence[Problem], reported: set[Any]) -> list[dict[str, str]]:
    """``{"table": ..., "error": ...}`` for each table a problem names and the table rows do not hold."""
    return [{"table": table, "error": cause} for tables, cause in by_cause(found) for table in tables
            if table not in reported]


def print_rows(rows: Sequence[dict[str, Any]], as_json: bool, redact: Redactor) -> None:
    if as_json:
        print(redact(json.dumps(list(rows), ensure_ascii=False, default=str)))
    elif rows:
        print(redact(text_table(rows)))


def report(mode: str, result: ExecuteInProcessResult, home: Path, view: MessageView, *, quiet: bool,
           as_json: bool, redact: Redactor, debug: bool = False) -> int:
    """The run's table on stdout, a line per problem on stderr (with ``debug``, after each step failure's
    whole chain of causes and their stack traces); the exit code."""
    found = problems(result)
    rows = summary_rows(mode, result, full=as_json)
    if as_json:
        rows = [*rows, *error_rows(found, {r.get("table") for r in rows})]
    print_rows(rows, as_json, redact)
    if result.success:
        if not quiet:
            view.say(f"{mode}: run {result.run_id} succeeded (Dagster instance {home})")
        return 0
    if debug:
        for chain in failure_chains(result):
            view.line(redact(chain))
    for line in one_line_per_cause(found) or [f"run {result.run_id} failed"]:
        view.error(redact(line))
    if not quiet:
        view.say(f"{mode}: run {result.run_id} failed (Dagster instance {home})")
    return FAILED
