"""Undo's rules for each row a manifest names (engine/undo/decide.py), and the update path's change report
(engine/update/change_report.py): no server, milliseconds."""

from __future__ import annotations

from websync_dagster.engine.run_files import COMMITTED, COMMITTING, ROLLED_BACK, UNIT, rows_to_undo
from websync_dagster.engine.undo.decide import UNSURE_NOT_AS_LEFT, UNSURE_ROLLED_BACK, Entry, decide
from websync_dagster.engine.update.change_report import ChangeCounts

IMAGE = {"id": "a", "title": "old"}


def _entry(op: str, row_id: str = "a", **kw: str) -> Entry:
    return Entry("web_pages", op, row_id, kw.get("hash"), kw.get("before"), kw.get("xmin"))


def test_an_inserted_row_is_deleted_only_while_its_xmin_is_the_runs_and_nothing_references_it():
    entries = [_entry("inserted", "a", xmin="7"), _entry("inserted", "b", xmin="7"), _entry("inserted", "c", xmin="7"),
               _entry("inserted", "d", xmin="7")]
    now = {"a": ("h", "7"), "b": ("h", "9"), "d": ("h", "7")}
    out = decide(entries, now, {}, {"d": "web_files"})
    assert [(a.action, a.id, a.expect) for a in out.actions] == [("delete", "a", "7")]
    assert out.left == {"b": "changed in prod since the run", "c": "no longer in prod",
                        "d": "referenced by a web_files row that stays in prod"}


def test_an_updated_row_is_restored_from_its_before_image_only_while_prod_holds_it_as_the_run_left_it():
    entries = [_entry("updated", "a", hash="new", before="old"), _entry("updated", "b", hash="new", before="old"),
               _entry("updated", "c", hash="new", before="gone")]
    now = {"a": ("new", "1"), "b": ("edited", "2"), "c": ("new", "3")}
    images = {("a", "old"): IMAGE}
    out = decide(entries, now, images, {})
    assert [(a.action, a.id, a.expect, a.image) for a in out.actions] == [("restore", "a", "new", IMAGE)]
    assert out.left == {"b": "changed in prod since the run", "c": "its before-image is missing"}


def test_a_row_an_undo_deleted_is_inserted_again_only_where_prod_holds_no_row_of_that_id():
    entries = [_entry("deleted", "a", before="old"), _entry("deleted", "b", before="old")]
    out = decide(entries, {"b": ("x", "1")}, {("a", "old"): IMAGE, ("b", "old"): IMAGE}, {})
    assert [(a.action, a.id, a.expect) for a in out.actions] == [("insert", "a", None)]
    assert out.left == {"b": "prod holds a row with this id again"}


def test_the_change_report_counts_each_column_and_the_columns_that_change_together():
    counts = ChangeCounts()
    dev = {"1": {"title": "t", "text": "new", "tags": None}, "2": {"title": "t2", "text": "new", "tags": "{a}"},
           "3": {"title": "t", "text": "same", "tags": None}}
    prod = {"1": {"title": "t", "text": "old", "tags": None}, "2": {"title": "t", "text": "old", "tags": None},
            "3": {"title": "t", "text": "same", "tags": None}, "9": {"title": "x", "text": "x", "tags": None}}
    counts.add(dev, prod, ["title", "text", "tags"])
    assert counts.to_dict() == {"rows": 3, "columns": {"text": 2, "title": 1, "tags": 1},
                                "together": {"text": 1, "title, text, tags": 1, "(no column)": 1}}


def test_a_row_whose_units_commit_was_not_seen_is_undone_when_prod_holds_it_as_the_unit_left_it():
    entries = [_entry("inserted", "a", xmin="7"), _entry("inserted", "b", xmin="7"),
               _entry("updated", "c", hash="new", before="old"), _entry("updated", "d", hash="new", before="old"),
               _entry("updated", "e", hash="new", before="old")]
    now = {"a": ("h", "7"), "c": ("new", "1"), "d": ("old", "2"), "e": ("edited", "3")}
    out = decide(entries, now, {("c", "old"): IMAGE}, {}, unsure={"a", "b", "c", "d", "e"})
    assert [(a.action, a.id) for a in out.actions] == [("delete", "a"), ("restore", "c")]
    assert out.left == {"b": UNSURE_ROLLED_BACK, "d": UNSURE_ROLLED_BACK, "e": UNSURE_NOT_AS_LEFT}


def _unit(unit: str, state: str, table: str = "web_pages") -> dict:
    return {"table": table, "op": UNIT, "unit": unit, "state": state}


def test_the_rows_undo_reads_skip_units_rolled_back_and_a_units_rows_a_later_unit_sent_again():
    def row(unit: str, row_id: str) -> dict:
        return {"table": "web_pages", "op": "inserted", "id": row_id, "xmin": unit, "unit": unit}

    lines = [row("u1", "a"), row("u1", "b"), _unit("u1", COMMITTING),  # its commit never seen: b sent again
             row("u2", "c"), _unit("u2", COMMITTING), _unit("u2", ROLLED_BACK),
             row("u3", "b"), row("u3", "c"), _unit("u3", COMMITTING), _unit("u3", COMMITTED),
             {"table": "web_files", "op": "inserted", "id": "f", "xmin": "9"}]  # an older manifest's line
    found = rows_to_undo(lines)
    assert [(line["id"], line.get("unit")) for line in found.lines] == [
        ("a", "u1"), ("b", "u3"), ("c", "u3"), ("f", None)]
    assert found.unsure == {"web_pages": {"a"}}
