"""What prod holds after a tool's run, what it should hold, and the verdict (``benchmarks/peers.py``'s correctness).

Correctness is prod's, not the tools' logs: per table, prod's row count and the sum over its rows of a 60-bit
prefix of ``md5(ROW(shipped columns)::text)`` (an order-free checksum, so that the expected figure can be built
from prod's figure before the run plus the dev rows that should land: those whose id and whose every other unique
key of prod's are free in prod). Prod-only columns (defaults, triggers) and columns a tool adds are left out.

The checksum reads every value as text under the same session settings (``SAME_TEXT``) in dev and in prod, so that
a row hashes alike on both sides.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from websync_dagster.core.tables import DEFAULT_TABLES

TABLES = list(DEFAULT_TABLES)  # FK order
SAME_TEXT = ("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
             "SET extra_float_digits = 1")


def _row_hash(cols: list[str], alias: str = "", only: sql.Composable | None = None) -> sql.Composable:
    only = only if only is not None else sql.SQL("true")
    row = sql.SQL(", ").join(sql.SQL(alias + "{}").format(sql.Identifier(c)) for c in cols)
    return sql.SQL("coalesce(sum(('x' || left(md5(ROW({})::text), 15))::bit(60)::bigint) FILTER (WHERE {}), 0)").format(
        row, only)


def prod_figures(prod_url: str, columns: dict[str, list[str]]) -> dict[str, list]:
    """Per table: [row count, checksum] of prod's rows over the shipped columns."""
    with psycopg.connect(prod_url) as conn:
        conn.execute(SAME_TEXT)
        return {t: [int(v) for v in conn.execute(sql.SQL("SELECT count(*), {} FROM {}").format(
            _row_hash(columns[t]), sql.Identifier(t))).fetchone()] for t in TABLES}


def unique_keys(conn: psycopg.Connection, table: str, cols: list[str]) -> list[list[str]]:
    """prod's unique keys of the table (plain column lists) that dev has too."""
    rows = conn.execute(
        "SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index AS i "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = %s::regclass AND i.indisunique AND i.indexprs IS NULL AND i.indpred IS NULL "
        "GROUP BY i.indexrelid", [table]).fetchall()
    return [r[0] for r in rows if all(c in cols for c in r[0])]


def expected_after(dev_url: str, prod_url: str, columns: dict[str, list[str]], before: dict[str, list],
                   new: dict[str, list]) -> tuple[dict, dict]:
    """prod's figures once an insert-only sync has run: ``before`` plus the dev rows whose id and other unique
    keys are all free in prod (counted and hashed in dev, with prod's keys copied into dev temp tables); and the
    same with only the rows the case added to dev (``new``), for a tool that missed rows in an earlier case."""
    expected, case_only = {}, {}
    with psycopg.connect(dev_url) as dev, psycopg.connect(prod_url) as prod:
        dev.execute(SAME_TEXT)
        for table in TABLES:
            cols = columns[table]
            conds = []
            for n, key in enumerate(unique_keys(prod, table, cols)):
                keys = sql.SQL(", ").join(map(sql.Identifier, key))
                temp = sql.Identifier(f"peers_key_{table}_{n}")
                dev.execute(sql.SQL("CREATE TEMP TABLE {} ({})").format(
                    temp, sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in key)))
                texts = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in key)
                out = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(texts, sql.Identifier(table))
                with prod.cursor().copy(out) as src, dev.cursor().copy(
                        sql.SQL("COPY {} ({}) FROM STDIN").format(temp, keys)) as dst:
                    for chunk in src:
                        dst.write(chunk)
                mine = sql.SQL(", ").join(sql.SQL("d.{}::text").format(sql.Identifier(c)) for c in key)
                theirs = sql.SQL(", ").join(sql.SQL("k.{}").format(sql.Identifier(c)) for c in key)
                conds.append(sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS k WHERE ({}) = ({}))").format(
                    temp, theirs, mine) if len(key) > 1 else sql.SQL(
                    "NOT EXISTS (SELECT 1 FROM {} AS k WHERE {} = {})").format(temp, theirs, mine))
            mine = sql.SQL("d.id = ANY(%s::uuid[])")
            count, digest, n_case, d_case = dev.execute(
                sql.SQL("SELECT count(*), {}, count(*) FILTER (WHERE {}), {} FROM {} AS d WHERE {}").format(
                    _row_hash(cols, "d."), mine, _row_hash(cols, "d.", mine), sql.Identifier(table),
                    sql.SQL(" AND ").join(conds or [sql.SQL("true")])), [new.get(table, [])] * 2).fetchone()
            expected[table] = [before[table][0] + int(count), before[table][1] + int(digest)]
            case_only[table] = [before[table][0] + int(n_case), before[table][1] + int(d_case)]
        dev.rollback()
    return expected, case_only if new else expected  # no new rows (full sync, re-run): no backlog allowed


def verdict(actual: dict, expected: dict, case_only: dict) -> tuple[bool, str]:
    """Right when prod holds what an insert-only sync should; also right (said so) when it holds that but for
    rows the tool had missed in an earlier case and still has not shipped (only the case's own rows landed)."""
    def wrong(want: dict) -> list[str]:
        out = []
        for table in TABLES:
            (n, digest), (m, figure) = actual[table], want[table]
            if n != m:
                out.append(f"{table} {n - m:+d} rows")
            elif digest != figure:
                out.append(f"{table} content differs")
        return out
    if not (missed := wrong(expected)):
        return True, "ok"
    if not wrong(case_only):
        backlog = ", ".join(f"{t} {expected[t][0] - case_only[t][0]}" for t in TABLES if expected[t] != case_only[t])
        return True, f"ok for this case's rows; rows missed in an earlier case still missing: {backlog}"
    return False, "; ".join(missed)


def schema_changes(prod_url: str, pristine_url: str) -> list[str]:
    """Tables and columns in prod that the benchmark's prod schema does not have (what a tool created)."""
    tables_q = ("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
    cols_q = ("SELECT table_name || '.' || column_name FROM information_schema.columns "
              "WHERE table_schema = 'public' AND table_name = ANY(%s)")
    with psycopg.connect(prod_url) as p, psycopg.connect(pristine_url) as t:
        new_tables = {r[0] for r in p.execute(tables_q)} - {r[0] for r in t.execute(tables_q)}
        new_cols = {r[0] for r in p.execute(cols_q, [TABLES])} - {r[0] for r in t.execute(cols_q, [TABLES])}
    return sorted(new_tables) + [f"+column {c}" for c in sorted(new_cols)]
