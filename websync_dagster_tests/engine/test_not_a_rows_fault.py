"""Only a row's fault is a reject; every rejected row keeps its content; a bug says it is one (issue 16,
items 3, 4 and 5). On real servers, through the ``websync`` command as a user runs it (in process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from websync_dagster.cli import main as websync_main
from websync_dagster.engine import load
from websync_dagster_tests.engine.test_refusals import prod_ddl
from websync_dagster_tests.helpers import count, sync_all

TABLES = ["web_sources", "knowledge_base", "web_pages", "web_files"]
BULK = "https://bulk.example.tn/bulk/"



def reject_files(export_dir: Path, table: str) -> list[Path]:
    return sorted((export_dir / "rejects").glob(f"{table}_*.rejects.jsonl"))


@pytest.mark.parametrize("state", ["XX000", "53200"])
def test_an_error_that_is_not_a_rows_fails_the_table_and_rejects_nothing(sync_env, capsys, state):
    """An extension's internal error (XX000) or an out-of-memory (53200) met while prod checks one row is
    not that row's fault: the unit rolls back, the table fails with prod's message and SQLSTATE, nothing
    goes to the reject file, the tables it does not hold up land."""
    with prod_ddl(sync_env) as prod:
        prod.execute(f"CREATE FUNCTION fragile_check(u text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$ "
                     f"BEGIN IF u LIKE '%page/150' THEN RAISE EXCEPTION 'index extension crashed on %', u "
                     f"USING ERRCODE = '{state}'; END IF; RETURN true; END $$")
        prod.execute("ALTER TABLE web_pages ADD CONSTRAINT fragile CHECK (fragile_check(url)) NOT VALID")
        # a row prod refuses for its own reason earlier in the file, so that the staged path (where the
        # probe casts and checks each row) runs on every transport, not only ssh_psql
        prod.execute("CREATE FUNCTION refuse_all_pages() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "RAISE EXCEPTION 'pages are frozen'; END $$")
        prod.execute("CREATE TRIGGER refuse_all_pages BEFORE INSERT ON web_pages "
                     "FOR EACH ROW EXECUTE FUNCTION refuse_all_pages()")
        pages_before = count(prod, "web_pages")

    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 1

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("websync: error: web_pages:")]
    assert len(lines) == 1, err
    assert "index extension crashed on https://" in lines[0] and f"(SQLSTATE {state})" in lines[0]
    assert "the unit in flight (rows " in lines[0] and "was rolled back (0 rows committed before stay)" in lines[0]
    assert "websync: error: web_files: not loaded: web_pages did not land in prod" in err
    assert reject_files(sync_env.export_dir, "web_pages") == []
    with sync_env.prod() as prod:
        assert count(prod, "web_pages") == pages_before
        assert count(prod, "knowledge_base") > sync_env.facts.prod_counts["knowledge_base"]  # landed


def _bulk_pages(sync_env, n: int) -> None:
    """``n`` new small dev pages (copies of one, under new ids and urls, with a short text) that prod's CHECK
    will refuse."""
    with sync_env.dev() as dev:
        template = dev.execute("SELECT id FROM web_pages ORDER BY url LIMIT 1").fetchone()[0]
        dev.execute(
            "INSERT INTO web_pages SELECT (jsonb_populate_record(NULL::web_pages, to_jsonb(s) || jsonb_build_object("
            "'id', gen_random_uuid(), 'url', %s || g, 'url_hash', md5(%s || g), 'extracted_text', 'bulk page ' || g, "
            "'structured_data', NULL, 'site_structure', NULL))).* "
            "FROM web_pages AS s, generate_series(1, %s) AS g WHERE s.id = %s", [BULK, BULK, n, template])
    with prod_ddl(sync_env) as prod:
        prod.execute(f"ALTER TABLE web_pages ADD CONSTRAINT no_bulk CHECK (url NOT LIKE '{BULK}%') NOT VALID")


def test_every_rejected_row_keeps_its_content_past_row_5000_of_a_unit(sync_env):
    _bulk_pages(sync_env, 6000)

    outcome = sync_all(sync_env.settings(WEBSYNC_COMMIT_EVERY_S="0"))["web_pages"]

    result = outcome.result
    rejects = [json.loads(line) for line in Path(result.reject_file).read_text().splitlines()]
    bulk = [r for r in rejects if (r["row"] or {}).get("url", "").startswith(BULK)]
    assert result.rejected == len(rejects) >= 6000
    assert len(bulk) == 6000, "every rejected row comes with its content"
    assert all("no_bulk" in r["reason"] for r in bulk)
    assert result.reject_rows_cut == 0


def test_a_cap_on_reject_content_counts_rejects_and_says_how_many_were_cut(sync_env, monkeypatch):
    monkeypatch.setattr(load, "REJECT_ROWS_WITH_CONTENT", 100)
    _bulk_pages(sync_env, 300)

    result = sync_all(sync_env.settings(WEBSYNC_COMMIT_EVERY_S="0"))["web_pages"].result

    rejects = [json.loads(line) for line in Path(result.reject_file).read_text().splitlines()]
    assert len(rejects) == result.rejected >= 300
    with_content = [r for r in rejects if r["row"] is not None]
    cut = [r for r in rejects if r["row"] is None]
    assert len(with_content) == 100
    assert len(cut) == result.reject_rows_cut == result.rejected - 100
    assert all("more than 100 rows of web_pages were rejected" in r["row_cut"] for r in cut)


def test_a_bug_is_one_line_that_says_so_and_debug_shows_the_chain(sync_env, capsys, monkeypatch):
    """A bug met by one table (here a KeyError planted in the load's accounting) is that table's failure,
    said as a bug; the other tables land; ``--debug`` shows the traceback and its cause."""
    settle = load._settle

    def buggy_settle(result, *args, **kwargs):
        if result.table == "web_pages":
            raise KeyError("x")
        return settle(result, *args, **kwargs)

    monkeypatch.setattr(load, "_settle", buggy_settle)

    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert ("websync: error: web_pages: internal error: KeyError: 'x' (a bug in websync; --debug shows the "
            "traceback)") in err.splitlines()
    assert "Traceback" not in err and "Stack Trace" not in err
    with sync_env.prod() as prod:
        assert count(prod, "web_sources") > sync_env.facts.prod_counts["web_sources"]

    assert websync_main(["sync", "--env-file", "/dev/null", "--quiet", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "buggy_settle" in err and "KeyError: 'x'" in err  # the bug's own frame, in the chain
    assert "The above exception was caused by the following exception" in err


def test_a_value_longer_than_prods_varchar_is_rejected_not_cut(sync_env, prod_via):
    """Prod's column is ``varchar(12)`` where dev's is text: a longer value is refused with prod's reason on
    every path (an explicit CAST would cut it to 12 characters in the staged path), the rest lands."""
    with prod_ddl(sync_env) as prod:
        prod.execute("ALTER TABLE web_pages ALTER COLUMN title TYPE varchar(12) USING left(title, 12)")
        # a refusal earlier in the file sends every transport through the staged path
        prod.execute("CREATE FUNCTION refuse_embargo() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "IF NEW.url LIKE '%page/150' THEN RAISE EXCEPTION 'under embargo'; END IF; RETURN NEW; END $$")
        prod.execute("CREATE TRIGGER refuse_embargo BEFORE INSERT ON web_pages "
                     "FOR EACH ROW EXECUTE FUNCTION refuse_embargo()")
    with sync_env.dev() as dev:
        long_id = dev.execute("UPDATE web_pages SET title = 'a title of forty characters, or so ....' "
                              "WHERE id = (SELECT id FROM web_pages WHERE url NOT LIKE '%page/150' "
                              "ORDER BY url DESC LIMIT 1) RETURNING id::text").fetchone()[0]

    pages = sync_all(prod_via(sync_env))["web_pages"].result

    rejects = {r["id"]: r for r in map(json.loads, Path(pages.reject_file).read_text().splitlines())}
    assert "value too long for type character varying(12)" in rejects[long_id]["reason"]
    with sync_env.prod() as prod:
        assert not prod.execute("SELECT 1 FROM web_pages WHERE id = %s", [long_id]).fetchone()
        assert not prod.execute("SELECT 1 FROM web_pages WHERE title = 'a title of f'").fetchone()
