"""Materialisation metadata and check results, built from the engine's results."""

from __future__ import annotations

from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
)

from websync_dagster.engine.export import ExportResult
from websync_dagster.engine.export_load import LoadOutcome
from websync_dagster.engine.update.units import UpdateResult


def export_metadata(result: ExportResult) -> dict[str, Any]:
    return {
        "scope": result.scope,
        "rows": result.rows,
        "dagster/row_count": result.rows,
        "bytes": result.bytes,
        "export_path": MetadataValue.path(result.path),
        "sha256": result.sha256,
        "columns": MetadataValue.json(list(result.columns)),
        "dev_rows": result.dev_rows,
        "already_in_prod": result.already_in_prod,
        "skipped_other_key": sum(result.clashes.values()),
        "skipped_by_key": MetadataValue.json(result.clashes),
        "seconds": result.seconds,
    }


def last_diff_same_version(instance: DagsterInstance, key: AssetKey) -> dict[str, Any]:
    """The rows both sides hold with the same version and other content, as the last diff of the table counted them
    (its observation of ``key``: diff_job, `websync diff`, the diff sensor), and when. A sync reads only ids and
    versions, so it cannot count them itself; the update path never touches them, so the diff's count stands
    until dev or prod changes. None when no diff of the table opted in was recorded."""
    records = instance.fetch_observations(key, limit=1).records
    observed = records[0].asset_observation if records else None
    value = observed.metadata.get("same_version_differs") if observed is not None else None
    if value is None or value.value is None:
        return {"same_version_differs": MetadataValue.null(), "same_version_differs_as_of": MetadataValue.null()}
    return {"same_version_differs": value.value,
            "same_version_differs_as_of": MetadataValue.timestamp(records[0].timestamp)}


def update_metadata(update: UpdateResult | None, same_version: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the newer-wins update path did (a table opted in by WEBSYNC_UPDATE_NEWER); ``updated`` 0 otherwise.
    ``same_version``: ``last_diff_same_version`` of the table."""
    if update is None:
        return {"updated": 0, "update_newer": False}
    data: dict[str, Any] = {
        "update_newer": True,
        "version_column": update.version,
        "updated": update.updated,
        "newer_in_dev": update.newer_in_dev,
        "prod_newer_kept": update.prod_newer_kept,
        **(same_version or {}),
        "update_left_unchanged": update.left_unchanged,
        "update_rejected": update.rejected,
        "update_skipped_by_key": MetadataValue.json(update.skipped),
        "update_lost": update.lost,
        "update_commits": update.commits,
        "update_seconds": update.seconds,
    }
    if update.changes.rows:
        changes = update.changes.to_dict()
        data["update_changes"] = MetadataValue.table(
            records=[TableRecord({"column": c, "rows": n}) for c, n in changes["columns"].items()],
            schema=TableSchema(columns=[TableColumn("column", "string"), TableColumn("rows", "int")]))
        data["update_columns_together"] = MetadataValue.json(changes["together"])
    if update.before_image_file:
        data["before_image_file"] = MetadataValue.path(update.before_image_file)
    if update.reject_file:
        data["update_reject_file"] = MetadataValue.path(update.reject_file)
    return data


def load_metadata(outcome: LoadOutcome, transport: str, *, reexported: bool = False,
                  update: UpdateResult | None = None, same_version: dict[str, Any] | None = None) -> dict[str, Any]:
    """``reexported``: the load was selected without its export, which was run again first; ``update``: what the
    newer-wins update path did after the inserts (None: the table is insert-only); ``same_version``: see
    ``last_diff_same_version``."""
    result, plan = outcome.result, outcome.plan
    rate = round(result.shipped / result.seconds) if result.seconds else 0
    data: dict[str, Any] = {
        "prod_rows_before": result.before,
        "prod_rows_after": result.after,
        "dagster/row_count": result.after,
        "shipped": result.shipped,
        "inserted": result.inserted,
        "already_present": result.already_present,
        "skipped_other_key": result.skipped_total,
        "skipped_by_key": MetadataValue.json(result.skipped),
        "rejected": result.rejected,
        "references_nulled": MetadataValue.json(result.nulled),
        "columns_shipped": MetadataValue.json(list(plan.shipped)),
        "dev_only_columns": MetadataValue.json(list(plan.dev_only)),
        "prod_only_columns": MetadataValue.json(list(plan.prod_only)),
        "type_mismatches": MetadataValue.json([str(m) for m in plan.type_mismatches]),
        "overrides": MetadataValue.json({k: repr(v) for k, v in plan.overrides.items()}),
        "overrides_skipped": MetadataValue.json([f"{k}: {why}" for k, why in plan.overrides_skipped.items()]),
        "warnings": MetadataValue.json(plan.warnings),
        "bytes": result.bytes,
        "seconds": result.seconds,
        "rows_per_s": rate,
        "mode": result.mode,
        "commits": result.commits,
        "transport": transport,
        "export_sha256": outcome.export.sha256,
        "export_path": MetadataValue.path(outcome.export.path),
        "export_reexported": reexported,
    }
    if result.wire_bytes is not None:
        data["wire_bytes_sent"] = result.wire_bytes
    if result.reject_file:
        data["reject_file"] = MetadataValue.path(result.reject_file)
    if result.manifest_file:
        data["manifest_file"] = MetadataValue.path(result.manifest_file)
    data.update(update_metadata(update, same_version))
    if result.fallback_reason:
        data["fast_path_refused"] = result.fallback_reason
    return data


def rejects_check(outcome: LoadOutcome, asset_key: AssetKey, name: str) -> AssetCheckResult:
    result = outcome.result
    return AssetCheckResult(
        asset_key=asset_key,
        check_name=name,
        passed=result.rejected == 0,
        severity=AssetCheckSeverity.WARN,
        description=(f"prod refused {result.rejected} rows; see {result.reject_file}" if result.rejected
                     else "prod accepted every row shipped"),
        metadata={"rejected": result.rejected, "reject_file": result.reject_file or ""},
    )


def landed_check(outcome: LoadOutcome, asset_key: AssetKey, name: str,
                 update: UpdateResult | None = None) -> AssetCheckResult:
    """Blocking: every row shipped is in prod now, or was refused with a reason, or prod already had it;
    from the server's own counts (COPY's row count, INSERT ... RETURNING), so a row that a trigger or rule
    silently dropped fails it. With ``update`` (a table opted in to newer-wins updates): every row the run meant to
    update was updated (UPDATE ... RETURNING), refused with a reason, or changed by prod since its before-image."""
    result = outcome.result
    lost_updates = update.lost if update is not None else 0
    problems = ([f"{result.lost} rows shipped to prod were neither inserted nor rejected"] if result.lost else []) + (
        [f"{lost_updates} rows newer in dev were neither updated, nor rejected, nor changed by prod "
         f"({', '.join(update.lost_ids[:5])})"] if update is not None and lost_updates else [])
    return AssetCheckResult(
        asset_key=asset_key,
        check_name=name,
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        description="; ".join(problems) or ("every row shipped is in prod (or rejected with a reason, or already "
                                            "there)" + ("; every row newer in dev updated, rejected or changed by "
                                                        "prod" if update is not None else "")),
        metadata={"shipped": result.shipped, "inserted": result.inserted, "rejected": result.rejected,
                  "lost": result.lost, **({"updated": update.updated, "update_rejected": update.rejected,
                                           "update_lost": lost_updates} if update is not None else {})},
    )


def dev_columns_check(outcome: LoadOutcome, asset_key: AssetKey, name: str) -> AssetCheckResult:
    """Warns when dev has columns prod lacks: their values are not shipped."""
    left = list(outcome.plan.dev_only)
    return AssetCheckResult(
        asset_key=asset_key,
        check_name=name,
        passed=not left,
        severity=AssetCheckSeverity.WARN,
        description=(f"dev-only columns not shipped: {', '.join(left)}" if left else "every dev column is shipped"),
        metadata={"dev_only_columns": MetadataValue.json(left)},
    )
