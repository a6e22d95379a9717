"""The configurations ``benchmarks/peers.py`` runs: Sling's, dlt's and websync's, each a ``Config``.

Sling runs as the binary the ``sling-linux-amd64`` wheel ships in the peers' venv, dlt as ``benchmarks/peers_dlt.py``
under that venv's python, websync as ``benchmarks/run.py`` runs it. Each run is timed as the whole command, from the
shell to its exit (wall clock); a failed run is quoted by its telling error line (``sling_error``, ``last_line``).
Also the versions of them all (``versions``), for the report.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.peers_check import TABLES
from benchmarks.run import WEBSYNC, Bench, websync

REPO = Path(__file__).resolve().parent.parent
PEERS_VENV = REPO / "benchmarks" / ".peers-venv"
PEERS_PY = PEERS_VENV / "bin" / "python"
DLT_RUNNER = REPO / "benchmarks" / "peers_dlt.py"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def sling_binary() -> Path:
    """Sling's binary as the ``sling-linux-amd64`` wheel ships it (the ``sling`` package would download it)."""
    found = sorted(PEERS_VENV.glob("lib/python*/site-packages/sling_linux_amd64/bin/sling-linux-amd64"))
    if not found:
        raise SystemExit(f"no Sling binary under {PEERS_VENV}: run `make bench-peers` (it installs the peers' venv)")
    return found[0]


def versions(bench: Bench) -> dict[str, str]:
    """Every tool's version, the server's, python's and the repo's commit (``+dirty``: uncommitted changes)."""
    script = ("import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' for p in "
              "('dlt', 'sqlalchemy', 'psycopg2-binary', 'reladiff', 'sqeleton', 'sling-linux-amd64')))")
    peers = subprocess.run([str(PEERS_PY), "-c", script], capture_output=True, text=True, check=True).stdout.split()
    sling = subprocess.run([str(sling_binary()), "--version"], capture_output=True, text=True).stdout.strip()
    websync_v = subprocess.run([str(WEBSYNC), "--version"], capture_output=True, text=True).stdout.strip()
    with psycopg.connect(bench.prod.url()) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True).stdout
    return {"websync": websync_v, "sling binary": sling, **dict(p.split("==") for p in peers),
            "postgres": server, "python": sys.version.split()[0], "commit": commit + ("+dirty" if dirty else "")}


@dataclass
class Config:
    name: str
    tool: str
    describe: str
    run: Callable[[str, Path], dict]  # (prod_url, work dir) -> {"seconds", "exit", "error"}
    prepare: Callable[[str], None] = lambda prod_url: None
    results: dict = field(default_factory=dict)
    failed: str = ""


def timed(argv: list[str], env: dict[str, str], cwd: Path, error: Callable[[str], str]) -> dict:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    out = {"seconds": seconds, "exit": proc.returncode, "error": ""}
    if proc.returncode != 0:
        out["error"] = error(ANSI.sub("", proc.stdout + "\n" + proc.stderr))
    return out


def sling_error(output: str) -> str:
    """The database's own line of each Sling failure (``pq: ...``; the line above it is the SQL statement)."""
    lines = [line.strip() for line in output.splitlines()]
    errors = list(dict.fromkeys(line for line in lines if line.startswith("pq:")))
    if errors:
        return " | ".join(errors)
    after = [line for line in lines[next((i + 1 for i, line in enumerate(lines) if "fatal" in line), 0):] if line]
    return after[0] if after else "no error line"


def last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no error line"


def sling_config(name: str, variant: str, dev_url: str, columns: dict[str, list[str]], types: dict) -> Config:
    """``documented``: Sling's Append Only mode (incremental, update_key, no primary key) straight into prod's
    tables. ``staged``/``staged_cursor``: every shipped column read as ``::text`` into a Sling-made table in schema
    ``sling_stage`` (full-refresh / incremental on updated_at), then the target option ``post_sql``:
    ``INSERT INTO public.t (cols) SELECT col::prodtype, ... FROM sling_stage.t ON CONFLICT DO NOTHING``."""
    streams = {}
    for table in TABLES:
        cols = columns[table]
        if variant == "documented":
            streams[f"public.{table}"] = {"object": f"public.{table}", "update_key": "updated_at"}
            continue
        cursor = variant == "staged_cursor"
        select = ", ".join(f'"{c}"' if cursor and c == "updated_at" else f'"{c}"::text AS "{c}"' for c in cols)
        where = " WHERE {incremental_where_cond}" if cursor else ""
        names = ", ".join(f'"{c}"' for c in cols)
        casts = ", ".join(f'"{c}"::{types[table][c]}' for c in cols)
        stream = {"sql": f"SELECT {select} FROM public.{table}{where}", "object": f"sling_stage.{table}",
                  "target_options": {"post_sql": f"INSERT INTO public.{table} ({names}) SELECT {casts} "
                                                 f"FROM sling_stage.{table} ON CONFLICT DO NOTHING"}}
        if cursor:
            stream["update_key"] = "updated_at"
        streams[f"public.{table}"] = stream
    mode = "full-refresh" if variant == "staged" else "incremental"
    replication = {"source": "DEV", "target": "PROD", "defaults": {"mode": mode}, "streams": streams}
    describe = {
        "documented": "Append Only (the documented insert-only mode of 1.4.11): `mode: incremental`, "
                      "`update_key: updated_at`, no primary_key, straight into prod's tables, one replication "
                      "file with the four streams in FK order",
        "staged": "each shipped column read as `::text` (custom `sql`) into a table Sling creates in schema "
                  "`sling_stage` (`mode: full-refresh`), then `target_options.post_sql`: `INSERT INTO public.<t> "
                  "(cols) SELECT col::<prod type>, ... FROM sling_stage.<t> ON CONFLICT DO NOTHING`; one "
                  "replication file, the four streams in FK order",
        "staged_cursor": "as `staged`, with `mode: incremental`, `update_key: updated_at` (updated_at read "
                         "uncast) into the staging table, so each run reads only rows newer than the staging "
                         "table's max(updated_at); the post_sql inserts the whole staging table ON CONFLICT DO NOTHING",
    }[variant]

    def run(prod_url: str, work: Path) -> dict:
        path = work / "replication.json"  # JSON is YAML
        path.write_text(json.dumps(replication, indent=1))
        env = {**os.environ, "DEV": f"{dev_url}?sslmode=disable", "PROD": f"{prod_url}?sslmode=disable",
               "SLING_HOME_DIR": str(work / "sling-home")}
        return timed([str(sling_binary()), "run", "-r", str(path)], env, work, sling_error)

    return Config(name, "sling", describe, run)


def dlt_config(name: str, variant: str, dev_url: str, columns: dict[str, list[str]], types: dict) -> Config:
    describe = {
        "documented": "`sql_database` over the four tables (default sqlalchemy backend, full reflection), each "
                      "resource `write_disposition={'disposition': 'merge', 'strategy': 'insert-only'}, "
                      "primary_key='id'`, one `pipeline.run`",
        "working": "the same insert-only merge with: every shipped column selected as `::text` "
                   "(`query_adapter_callback`), `reflection_level='minimal'` and each column hinted `text`; the "
                   "staging tables (`public_staging.<t>`: the shipped columns with prod's types, plus `_dlt_load_id`, "
                   "`_dlt_id`) created beforehand by the benchmark; one `pipeline.run` per table in FK order, one "
                   "process",
        "cursor": "`working` plus `incremental=dlt.sources.incremental('created_at')` on each table",
    }[variant]

    def prepare(prod_url: str) -> None:
        if variant == "documented":
            return
        with psycopg.connect(prod_url) as conn:
            conn.execute("CREATE SCHEMA public_staging")
            for table in TABLES:
                body = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(types[table][c])) for c in columns[table]]
                body += [sql.SQL("_dlt_load_id varchar"), sql.SQL("_dlt_id varchar")]
                conn.execute(sql.SQL("CREATE TABLE public_staging.{} ({})").format(
                    sql.Identifier(table), sql.SQL(", ").join(body)))

    def run(prod_url: str, work: Path) -> dict:
        path = work / "dlt.json"
        path.write_text(json.dumps({"dev": dev_url, "prod": prod_url, "pipelines_dir": str(work / "pipelines"),
                                    "tables": TABLES, "columns": columns, "variant": variant}))
        env = {**os.environ, "RUNTIME__LOG_LEVEL": "ERROR"}
        return timed([str(PEERS_PY), str(DLT_RUNNER), str(path)], env, work, last_line)

    return Config(name, "dlt", describe, run, prepare)


def websync_config(bench: Bench, dev_url: str) -> Config:
    def run(prod_url: str, work: Path) -> dict:
        result = websync(bench, dev_url, prod_url, work, check=False)
        return {"seconds": result["wall_s"], "exit": result["exit"], "error": result.get("error", "")}
    return Config("websync", "websync", "`websync sync` (its defaults, direct transport), as `benchmarks/run.py` "
                  "runs it (benchmarks/websync_run.py: the console script's run in its own process)", run)
