"""The ``websync`` command line: its parser, and the command put first (the runbook's ``--export``,
``--status`` and ``--diff`` turned into their command) so that options may come before or after it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from websync_dagster.core.tables import DEFAULT_TABLES

RUNBOOK_FLAGS = {"--export": "export", "--status": "status", "--diff": "diff"}
#: options that take a value (so that the value is not mistaken for the command)
VALUE_OPTIONS = ("--env-file", "--tables", "--update-newer")


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
        prog="websync", description="Insert-only sync of dev's crawled content into prod (newer-wins updates where a "
        "table opts in, undone by `websync undo`), run as Dagster jobs on the DAGSTER_HOME instance (so the UI shows "
        "every run). The runbook's --export, --status and --diff work too.",
        epilog="Exit status: 0 every table completed (rejected rows are reported, not failures); 1 a table failed; "
        "2 bad configuration; 130 interrupted (Ctrl-C, SIGINT); 143 stopped by SIGTERM (cron, systemd, docker stop).")
    parser.add_argument("--version", action="version", version=f"websync {package_version()}")
    commands = parser.add_subparsers(dest="mode", metavar="{sync,export,status,diff,undo}")
    sync = commands.add_parser("sync", parents=[common, tables], help="export the rows prod lacks and insert them "
                               "(default)", description="websync_job: per table in FK order, export from dev the rows "
                               "prod lacks and insert them into prod, insert-only (unless --update-newer or "
                               "WEBSYNC_UPDATE_NEWER opts a table in).")
    sync.add_argument("--dry-run", action="store_true", help="read both sides and say per table what would be "
                      "inserted, skipped and sent; write nothing to prod and run no Dagster job")
    sync.add_argument("--update-newer", action="append", metavar="TABLE[:COLUMN]",
                      help="also update the prod rows of TABLE whose version COLUMN (default updated_at) dev has "
                      "newer, their before-images kept for undo (repeatable; replaces WEBSYNC_UPDATE_NEWER)")
    undo = commands.add_parser("undo", parents=[common], help="take back what a run did to prod",
                               description="undo_job: restore the rows a run updated and delete the rows it inserted, "
                               "only where prod still holds them as that run left them; itself a run, so it can be "
                               "undone.")
    undo.add_argument("run_id", help="the run to undo (websync's final line and the Dagster UI show run ids)")
    undo.add_argument("--dry-run", action="store_true", help="say per table what would be restored, deleted and left "
                      "alone; write nothing and run no Dagster job")
    commands.add_parser("export", parents=[common, tables], help="every row of every table to CSV, no prod needed",
                        description="export_job: every row and column of each table to CSV under WEBSYNC_EXPORT_DIR.")
    commands.add_parser("status", parents=[common], help="prod's row counts and crawl sources",
                        description="status_job: prod's row counts and web_sources.")
    commands.add_parser("diff", parents=[common, tables], help="dev vs prod per table",
                        description="diff_job: per table dev count, prod count, missing in prod, only in prod, "
                        "changed.")
    return parser


def package_version() -> str:
    from websync_dagster import __version__

    return __version__


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
    args.update_newer = getattr(args, "update_newer", None)
    args.run_id = getattr(args, "run_id", None)
    return args
