"""The staged path's clash passes on the probe table: rows prod already has by id or another unique key
(also its expression and partial unique indexes, and twins within the batch on those) are left out and
counted per key; references to rows prod lacks are set to NULL, or the row is rejected when the column
cannot be NULL."""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql

from websync_dagster.engine.catalog import ExpressionKey, ForeignKey
from websync_dagster.engine.load.temp_tables import NULLED, PROBE, REJECTS, SKIPPED, column_list
from websync_dagster.engine.plan import TablePlan
from websync_dagster.transport.base import Statement, Step

#: the key name under which rows prod has by primary key are counted (as already present, not skipped)
ALREADY_PRESENT = "already_present"


def clash_passes(plan: TablePlan) -> list[Step]:
    """Every pass, in order: unique keys, expression and partial unique indexes, then references."""
    return [
        *_skip_clashes(plan),
        *(step for n, key in enumerate(plan.prod.expression_keys) for step in _skip_expression_clashes(plan, key, n)),
        *_fix_references(plan),
    ]


def _match(columns: Iterable[str], refs: Iterable[str], left: str, right: str) -> sql.Composed:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(right, r), sql.Identifier(left, c))
        for c, r in zip(columns, refs, strict=True)
    )


def _skip_clashes(plan: TablePlan) -> list[Step]:
    """Leave out rows whose id, or any other unique key, prod already has; count them per key."""
    steps: list[Step] = []
    for key in plan.prod.unique_keys:
        if not set(key.columns) <= set(plan.shipped):
            continue
        label = ALREADY_PRESENT if key.primary else key.name
        steps.append(Statement(sql.SQL(
            "WITH gone AS (DELETE FROM {probe} AS p WHERE EXISTS (SELECT 1 FROM {table} AS t WHERE {match}) "
            "RETURNING p.{key}) INSERT INTO {skipped} (key_name, id) SELECT {label}, {key}::text FROM gone"
        ).format(
            probe=PROBE, table=sql.Identifier(plan.table), match=_match(key.columns, key.columns, "p", "t"),
            key=sql.Identifier(plan.key), skipped=SKIPPED, label=sql.Literal(label),
        )))
    return steps


def _key_columns(key: ExpressionKey) -> list[str]:
    """Names of the evaluated key expressions in the temp tables."""
    return [f"_ws_k{i}" for i in range(1, len(key.expressions) + 1)]


def _keys_match(key: ExpressionKey, left: str, right: str) -> sql.Composed:
    same = sql.SQL(" IS NOT DISTINCT FROM ") if key.nulls_not_distinct else sql.SQL(" = ")
    return sql.SQL(" AND ").join(
        sql.SQL("{}{}{}").format(sql.Identifier(left, k), same, sql.Identifier(right, k)) for k in _key_columns(key)
    )


def _skip_expression_clashes(plan: TablePlan, key: ExpressionKey, n: int) -> list[Step]:
    """Leave out rows that clash, on a unique index over expressions or a partial one, with a prod row or
    with an earlier row of the batch; count them under the index's name.

    The index's expressions (and predicate) are prod's own SQL over the table's column names: evaluated
    on the probe (same columns) into a temp table, then on prod's rows holding those values only (so
    that prod's index serves the lookup).
    """
    keys_name = f"_ws_xkey_{n}"
    keys = sql.Identifier("pg_temp", keys_name)
    exprs = [sql.SQL(e) for e in key.expressions]
    predicate = sql.SQL(key.predicate) if key.predicate else sql.SQL("true")
    if not key.nulls_not_distinct:  # NULLs never clash in such an index
        predicate = sql.SQL(" AND ").join([sql.SQL("({})").format(predicate),
                                           *(sql.SQL("({}) IS NOT NULL").format(e) for e in exprs)])
    names = _key_columns(key)
    evaluated = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(e, sql.Identifier(k)) for e, k in zip(exprs, names, strict=True))
    in_prod = sql.SQL("SELECT DISTINCT {evaluated} FROM {table} WHERE {pred}").format(
        evaluated=evaluated, table=sql.Identifier(plan.table), pred=predicate)
    if not key.nulls_not_distinct:  # only prod's rows with the batch's values, found through the index
        in_prod = sql.SQL("{} AND ({}) IN (SELECT {} FROM {})").format(
            in_prod, sql.SQL(", ").join(exprs), column_list(names), keys)
    skip = sql.SQL(
        "WITH gone AS (DELETE FROM {probe} AS p USING {rows} AS x WHERE p._ws_row = x._ws_row RETURNING p.{id}) "
        "INSERT INTO {skipped} (key_name, id) SELECT {label}, {id}::text FROM gone")
    clash_prod = sql.SQL("(SELECT x._ws_row FROM {keys} AS x JOIN ({in_prod}) AS h ON {match})").format(
        keys=keys, in_prod=in_prod, match=_keys_match(key, "x", "h"))
    later_twin = sql.SQL(
        "(SELECT _ws_row FROM (SELECT x._ws_row, row_number() OVER (PARTITION BY {names} ORDER BY x._ws_row) AS nth "
        "FROM {keys} AS x JOIN {probe} AS p USING (_ws_row)) AS r WHERE nth > 1)"
    ).format(names=column_list(names, "x"), keys=keys, probe=PROBE)
    fill = dict(probe=PROBE, id=sql.Identifier(plan.key), skipped=SKIPPED, label=sql.Literal(key.name))
    return [
        Statement(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT _ws_row, {} FROM {} WHERE {}").format(
            sql.Identifier(keys_name), evaluated, PROBE, predicate)),
        Statement(skip.format(rows=clash_prod, **fill)),
        Statement(skip.format(rows=later_twin, **fill)),
    ]


def _missing_target(plan: TablePlan, fk: ForeignKey) -> sql.Composed:
    """Rows of the probe whose reference prod cannot satisfy (NULL references never count)."""
    present = [sql.SQL("EXISTS (SELECT 1 FROM {} AS r WHERE {})").format(
        sql.Identifier(fk.ref_table), _match(fk.columns, fk.ref_columns, "p", "r"))]
    if fk.ref_table == plan.table:  # self-reference: a row of the same batch is a valid target
        present.append(sql.SQL("EXISTS (SELECT 1 FROM {} AS r WHERE {})").format(
            PROBE, _match(fk.columns, fk.ref_columns, "p", "r")))
    not_null = sql.SQL(" AND ").join(sql.SQL("p.{} IS NOT NULL").format(sql.Identifier(c)) for c in fk.columns)
    return sql.SQL("{} AND NOT ({})").format(not_null, sql.SQL(" OR ").join(present))


def _fix_references(plan: TablePlan) -> list[Step]:
    """References to rows prod lacks: set to NULL when the column allows it, else reject the row."""
    steps: list[Step] = []
    fks = [fk for fk in plan.prod.foreign_keys if set(fk.columns) <= set(plan.shipped)]
    required = [fk for fk in fks if any(plan.prod.column(c).not_null for c in fk.columns)]
    optional = [fk for fk in fks if fk not in required]
    for fk in required:
        reason = sql.SQL(
            "format('%s references %s(%s) = %s, which prod does not have (constraint %s)', "
            "{cols}, {ref}, {refcols}, concat_ws(', ', {vals}), {name})"
        ).format(
            cols=sql.Literal(", ".join(fk.columns)), ref=sql.Literal(fk.ref_table),
            refcols=sql.Literal(", ".join(fk.ref_columns)), name=sql.Literal(fk.name),
            vals=sql.SQL(", ").join(sql.SQL("p.{}::text").format(sql.Identifier(c)) for c in fk.columns),
        )
        steps.append(Statement(sql.SQL(
            "WITH gone AS (DELETE FROM {probe} AS p WHERE {missing} RETURNING p._ws_row, p.{key}::text AS id, "
            "{reason} AS reason) INSERT INTO {rejects} (_ws_row, id, reason) SELECT _ws_row, id, reason FROM gone"
        ).format(probe=PROBE, missing=_missing_target(plan, fk), key=sql.Identifier(plan.key),
                 reason=reason, rejects=REJECTS)))
    for fk in optional:
        assignments = sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in fk.columns)
        steps.append(Statement(sql.SQL(
            "WITH fixed AS (UPDATE {probe} AS p SET {assign} WHERE {missing} RETURNING 1) "
            "INSERT INTO {nulled} (column_name, n) SELECT {label}, count(*) FROM fixed"
        ).format(probe=PROBE, assign=assignments, missing=_missing_target(plan, fk), nulled=NULLED,
                 label=sql.Literal(", ".join(fk.columns)))))
    return steps
