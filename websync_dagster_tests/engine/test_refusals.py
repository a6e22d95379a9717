"""Rows prod refuses for reasons only it knows (its triggers, its indexes) go to the reject file or are
skipped by name, and the rest of the table lands (issue 9, items 3 and 4).

Against real servers, through every transport (``prod_via``).
"""

from __future__ import annotations

import json
import random
import string
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from websync_dagster.engine.load import refused_by_a_row
from websync_dagster_tests.helpers import count, sync_all, table_snapshot

TABLES = ["web_sources", "knowledge_base", "web_pages", "web_files"]


@contextmanager
def prod_ddl(sync_env: Any) -> Iterator[psycopg.Connection]:
    """A superuser connection to the test's prod database with the DDL guard off, as test setup."""
    with sync_env.prod() as prod:
        prod.execute("ALTER EVENT TRIGGER websync_ddl_guard DISABLE")
        try:
            yield prod
        finally:
            prod.execute("ALTER EVENT TRIGGER websync_ddl_guard ENABLE")


def clone_dev_row(dev: psycopg.Connection, table: str, template_id: str, **changes: Any) -> str:
    """Insert into dev a copy of one of its rows under a new id (or ``changes["id"]``), with ``changes``;
    return the new id."""
    new_id = str(changes.pop("id", None) or uuid.uuid4())
    dev.execute(sql.SQL(
        "INSERT INTO {t} SELECT (jsonb_populate_record(NULL::{t}, to_jsonb(s) || %s::jsonb)).* "
        "FROM {t} AS s WHERE id = %s"
    ).format(t=sql.Identifier(table)), [json.dumps({"id": new_id, **changes}), template_id])
    return new_id


def dev_id(dev: psycopg.Connection, table: str, where: str, value: Any) -> str:
    query = sql.SQL("SELECT id::text FROM {} WHERE {} = %s").format(sql.Identifier(table), sql.Identifier(where))
    return dev.execute(query, [value]).fetchone()[0]


def ids(conn: psycopg.Connection, table: str) -> set[str]:
    return set(table_snapshot(conn, table))


def rejects_of(result: Any) -> dict[str, dict[str, Any]]:
    if not result.reject_file:
        return {}
    lines = Path(result.reject_file).read_text(encoding="utf-8").splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def assert_prod_rows_untouched(before: dict[str, dict[str, str]], prod: psycopg.Connection) -> None:
    for table, rows in before.items():
        after = table_snapshot(prod, table)
        assert {i: after.get(i) for i in rows} == rows, f"{table}: a row prod had was changed"


def assert_every_dev_row_accounted(dev: psycopg.Connection, prod: psycopg.Connection, table: str,
                                   left_out: set[str]) -> None:
    """Every dev row is in prod, except exactly ``left_out``."""
    assert ids(dev, table) - ids(prod, table) == left_out, table


def page_url(n: int) -> str:
    return f"https://source.example.tn/page/{n}"


def test_a_row_a_prod_trigger_refuses_is_rejected_and_the_rest_lands(sync_env, prod_via):
    facts = sync_env.facts
    with prod_ddl(sync_env) as prod:
        prod.execute(
            "CREATE FUNCTION refuse_page() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.url LIKE '%page/150' THEN RAISE EXCEPTION 'prod refuses page 150: under embargo'; END IF; "
            "RETURN NEW; END $$"
        )
        prod.execute("CREATE TRIGGER refuse_page BEFORE INSERT ON web_pages "
                     "FOR EACH ROW EXECUTE FUNCTION refuse_page()")
        before = {t: table_snapshot(prod, t) for t in TABLES}
    with sync_env.dev() as dev:
        refused = dev_id(dev, "web_pages", "url", page_url(150))
        files_on_refused = {r[0] for r in dev.execute(
            "SELECT id::text FROM web_files WHERE web_page_id = %s", [refused]).fetchall()}
    settings = prod_via(sync_env)

    first = sync_all(settings)

    pages = first["web_pages"].result
    rejects = rejects_of(pages)
    assert "prod refuses page 150: under embargo" in rejects[refused]["reason"]
    assert rejects[refused]["row"]["url"] == page_url(150)
    assert pages.lost == 0
    if prod_via.transport != "ssh_psql":  # the COPY straight into the table was tried first
        assert "prod refuses page 150" in (pages.fallback_reason or "")
    with sync_env.dev() as dev, sync_env.prod() as prod:
        assert_prod_rows_untouched(before, prod)
        assert_every_dev_row_accounted(dev, prod, "web_pages", set(rejects) | {facts.clash_other_key["web_pages"]})
        assert refused not in ids(prod, "web_pages")
        assert files_on_refused <= set(rejects_of(first["web_files"].result))  # their page is not in prod
        counts = {t: count(prod, t) for t in TABLES}

    second = sync_all(settings)

    assert second["web_pages"].result.inserted == 0
    assert set(rejects_of(second["web_pages"].result)) == set(rejects)  # page 150 (and the orphan) again
    assert second["web_pages"].result.lost == 0
    with sync_env.prod() as prod:
        assert {t: count(prod, t) for t in TABLES} == counts


def test_mutual_references_survive_a_refusal_between_them(sync_env, prod_via):
    """Isolating a refused row splits the batch; two new rows referencing each other across that split
    still land (they are retried together)."""
    with prod_ddl(sync_env) as prod:
        prod.execute(
            "CREATE FUNCTION refuse_doc() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.title = 'Refused by prod' THEN RAISE EXCEPTION 'prod refuses document %', NEW.id; END IF; "
            "RETURN NEW; END $$"
        )
        prod.execute("CREATE TRIGGER refuse_doc BEFORE INSERT ON knowledge_base "
                     "FOR EACH ROW EXECUTE FUNCTION refuse_doc()")
    with sync_env.dev() as dev:
        template = dev.execute(
            "SELECT id::text FROM knowledge_base WHERE title LIKE 'Document 10 %' AND embedding IS NULL"
        ).fetchone()[0]
        older, newer = str(uuid.uuid4()), str(uuid.uuid4())
        # shipped in this order: the older version references a row shipped after the refused one
        dev.execute("SET session_replication_role = replica")  # dev's FK checks off while the pair is written
        clone_dev_row(dev, "knowledge_base", template, id=older, title="Older version", superseded_by_id=newer)
        fillers = [clone_dev_row(dev, "knowledge_base", template, title=f"Filler {n}") for n in range(12)]
        refused = clone_dev_row(dev, "knowledge_base", template, title="Refused by prod")
        fillers += [clone_dev_row(dev, "knowledge_base", template, title=f"Filler {n}") for n in range(12, 24)]
        clone_dev_row(dev, "knowledge_base", template, id=newer, title="Newer version", supersedes_id=older)
        dev.execute("SET session_replication_role = DEFAULT")

    outcomes = sync_all(prod_via(sync_env))

    kb = outcomes["knowledge_base"].result
    rejects = rejects_of(kb)
    assert f"prod refuses document {refused}" in rejects[refused]["reason"]
    assert older not in rejects and newer not in rejects, rejects
    assert kb.lost == 0
    with sync_env.prod() as prod:
        landed = ids(prod, "knowledge_base")
        assert {older, newer, *fillers} <= landed
        pair = prod.execute("SELECT superseded_by_id::text FROM knowledge_base WHERE id = %s", [older]).fetchone()
        assert pair == (newer,)


def lexeme_soup(words: int, seed: int = 11) -> str:
    """Text of distinct random words: its tsvector is about as long as the text itself."""
    rng = random.Random(seed)
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=9)) for _ in range(words))


def test_a_text_too_long_for_prods_full_text_index_is_rejected(sync_env, prod_via):
    facts = sync_env.facts
    with sync_env.prod() as prod:
        indexes = prod.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'web_pages'").fetchall()
        assert any("to_tsvector" in d for (d,) in indexes), "prod must have its full-text index on web_pages"
        before = {t: table_snapshot(prod, t) for t in TABLES}
    soup = lexeme_soup(120_000)  # ~1.6 MB of lexemes; a tsvector holds at most 1 MB (1048575 bytes)
    with sync_env.dev() as dev:
        dev.execute("DROP INDEX web_pages_fts")  # dev has no such limit
        template = dev_id(dev, "web_pages", "url", page_url(10))
        url = "https://source.example.tn/page/huge"
        huge = clone_dev_row(dev, "web_pages", template, url=url, url_hash=uuid.uuid4().hex, extracted_text=soup)

    outcomes = sync_all(prod_via(sync_env))

    pages = outcomes["web_pages"].result
    rejects = rejects_of(pages)
    assert "string is too long for tsvector" in rejects[huge]["reason"], rejects[huge]["reason"]
    assert pages.lost == 0
    with sync_env.dev() as dev, sync_env.prod() as prod:
        assert_prod_rows_untouched(before, prod)
        assert_every_dev_row_accounted(dev, prod, "web_pages", set(rejects) | {facts.clash_other_key["web_pages"]})
        assert huge not in ids(prod, "web_pages")


def test_expression_and_partial_unique_indexes_skip_clashing_rows(sync_env, prod_via):
    facts = sync_env.facts
    prod_only_source = facts.prod_only["web_sources"][1]  # "Prod-only source", active, base_url source91
    with prod_ddl(sync_env) as prod:
        prod.execute("CREATE UNIQUE INDEX web_sources_base_url_lower ON web_sources (lower(base_url))")
        prod.execute("CREATE UNIQUE INDEX web_sources_active_name ON web_sources (name) WHERE is_active")
        name, base_url = prod.execute("SELECT name, base_url FROM web_sources WHERE id = %s",
                                      [prod_only_source]).fetchone()
        before = {t: table_snapshot(prod, t) for t in TABLES}
    template = facts.already_in_prod["web_sources"][0]
    with sync_env.dev() as dev:
        case_clash = clone_dev_row(dev, "web_sources", template, base_url=base_url.upper(), name="Upper case")
        twin_a = clone_dev_row(dev, "web_sources", template, base_url="https://twin.example.tn", name="Twin a")
        twin_b = clone_dev_row(dev, "web_sources", template, base_url="https://TWIN.example.tn", name="Twin b")
        name_clash = clone_dev_row(dev, "web_sources", template, base_url="https://n1.example.tn", name=name)
        inactive = clone_dev_row(dev, "web_sources", template, base_url="https://n2.example.tn", name=name,
                                 is_active=False)
        page_template = dev_id(dev, "web_pages", "url", page_url(10))
        page_on_clash = clone_dev_row(dev, "web_pages", page_template, web_source_id=case_clash,
                                      url_hash=uuid.uuid4().hex)
        page_on_new = clone_dev_row(dev, "web_pages", page_template, web_source_id=inactive,
                                    url_hash=uuid.uuid4().hex)

    settings = prod_via(sync_env)
    outcomes = sync_all(settings)

    sources = outcomes["web_sources"].result
    assert sources.skipped == {"web_sources_base_url_key": 1, "web_sources_base_url_lower": 2,
                               "web_sources_active_name": 1}
    assert sources.lost == 0
    with open(outcomes["web_sources"].export.path, encoding="utf-8") as f:
        shipped_first = min((twin_a, twin_b), key=f.read().index)  # of two clashing rows, the first lands
    with sync_env.dev() as dev, sync_env.prod() as prod:
        assert_prod_rows_untouched(before, prod)
        landed = ids(prod, "web_sources")
        assert {shipped_first, inactive} <= landed
        assert not {case_clash, name_clash, {twin_a, twin_b}.difference([shipped_first]).pop()} & landed
        # the dependent tables loaded: the page on the new source landed, the one on the skipped source did not
        assert page_on_new in ids(prod, "web_pages")
        page_rejects = rejects_of(outcomes["web_pages"].result)
        assert "which prod does not have" in page_rejects[page_on_clash]["reason"]
        for table in TABLES:
            assert outcomes[table].result.lost == 0, table
        assert_every_dev_row_accounted(dev, prod, "web_pages",
                                       set(page_rejects) | {facts.clash_other_key["web_pages"]})


def test_a_delta_that_clashes_with_nothing_is_one_copy_into_the_table(sync_env, prod_via):
    settings = prod_via(sync_env)
    sync_all(settings)
    template = sync_env.facts.already_in_prod["web_sources"][0]
    with sync_env.dev() as dev:
        new = clone_dev_row(dev, "web_sources", template, base_url="https://clean.example.tn", name="Clean")

    sources = sync_all(settings)["web_sources"].result

    assert (sources.inserted, sources.lost, sources.rejected) == (1, 0, 0)
    assert sources.mode == ("staged" if prod_via.transport == "ssh_psql" else "direct copy")
    with sync_env.prod() as prod:
        assert new in ids(prod, "web_sources")


def test_only_refusals_a_row_can_cause_count_as_row_refusals(sync_env):
    """A refused row is isolated and rejected; a dropped connection or a full disk rolls the table back."""
    with sync_env.prod() as prod:
        with pytest.raises(psycopg.Error) as too_long:
            prod.execute("SELECT to_tsvector('simple', %s)", [lexeme_soup(120_000)])
        with pytest.raises(psycopg.Error) as raised:
            prod.execute("DO $$ BEGIN RAISE EXCEPTION 'refused by a trigger'; END $$")
        with pytest.raises(psycopg.Error) as disk_full:
            prod.execute("DO $$ BEGIN RAISE EXCEPTION 'disk full' USING ERRCODE = 'disk_full'; END $$")
        with pytest.raises(psycopg.Error) as bad_value:
            prod.execute("SELECT 'x'::int")
    with sync_env.prod() as victim, pytest.raises(psycopg.OperationalError) as dropped:
        victim.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    assert [refused_by_a_row(e.value) for e in (too_long, raised, bad_value)] == [True, True, True]
    assert [refused_by_a_row(e.value) for e in (disk_full, dropped)] == [False, False]
