"""``websync_nightly``: the nightly sync, stopped until turned on in the UI."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition

from websync_dagster.defs.jobs import AssetJob


def build_nightly_schedule(websync_job: AssetJob, cron: str) -> ScheduleDefinition:
    return ScheduleDefinition(
        name="websync_nightly",
        job=websync_job,
        cron_schedule=cron,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Nightly sync (WEBSYNC_NIGHTLY_CRON; stopped until turned on in the UI).",
    )
