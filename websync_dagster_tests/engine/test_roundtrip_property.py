"""Property: whatever text, text array and jsonb a row holds in dev, prod holds the same after a sync, on
every transport (compared as Postgres prints each column).

Random text includes control characters (all but NUL, which Postgres text refuses), RTL marks, emoji,
lines that are exactly ``\\.`` (psql's end of data), a trailing backslash, CSV's own quote and NULL
spellings, and the empty string next to NULL. Each example inserts rows with fresh ids into the test's
dev database and syncs ``web_pages`` through one SyncContext; only those ids are compared.

Profiles: ``websync`` (25 examples) by default; ``ci`` (derandomized, 15 examples) when CI is set.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from websync_dagster.core.tables import DECLARED_DEPS
from websync_dagster.engine.context import SyncContext
from websync_dagster.engine.export_load import run_export, run_load
from websync_dagster_tests.helpers import rows_by_id

settings.register_profile(
    "websync", max_examples=25, deadline=None, database=None,
    # one database pair per test; each example uses fresh ids in it, so sharing it is sound
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile("ci", parent=settings.get_profile("websync"), max_examples=15, derandomize=True)
PROFILE = settings.get_profile("ci" if os.environ.get("CI") else "websync")

COMPARED = ["url", "title", "canonical_url", "extracted_text", "meta_keywords", "structured_data"]
TRICKY = [
    "", "\\.", "\\", "a\\", "\\N", "NULL", '"', '""', ",", "\r", "\n", "\r\n", "\\.\r", " \\.", "\t",
    "\u200f", "\u202e", "\u200b", "\ufeff", "😀", "👩‍👩‍👧", "\x7f", "\x01\x1b[31m", "é", "ß", "\u0301",
]
characters = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
pieces = st.one_of(st.sampled_from(TRICKY), st.text(characters, max_size=12))
# lines joined by newlines: a piece alone on its line (``\\.`` among them) is a whole line of the CSV
text = st.lists(pieces, max_size=5).map("\n".join) | st.text(characters, max_size=40)
json_text = st.text(characters, max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | json_text | st.sampled_from(TRICKY),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=8,
)
rows = st.lists(
    st.fixed_dictionaries({
        "title": st.none() | text,
        "canonical_url": st.none() | st.just("") | st.sampled_from(TRICKY),
        "extracted_text": st.none() | text,
        "meta_keywords": st.none() | st.lists(st.none() | text, max_size=4),
        # SQL NULL, or any JSON value (JSON null included)
        "structured_data": st.none() | json_values.map(Jsonb),
    }),
    min_size=1, max_size=4,
)

INSERT = (
    "INSERT INTO web_pages (id, web_source_id, url, url_hash, title, canonical_url, extracted_text, "
    "meta_keywords, structured_data, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::text[], %s, 'crawled')"
)


def _insert(dev: Any, source_id: str, batch: list[dict[str, Any]]) -> list[str]:
    ids = []
    for row in batch:
        row_id = str(uuid.uuid4())
        ids.append(row_id)
        url = f"https://example.tn/{row_id}/{row['title'] or ''}"  # the URL carries random text too
        dev.execute(INSERT, [row_id, source_id, url, row_id, row["title"], row["canonical_url"],
                             row["extracted_text"], row["meta_keywords"], row["structured_data"]])
    return ids


def test_any_text_array_and_json_lands_in_prod_as_it_left_dev(sync_env, prod_via):
    facts = sync_env.facts
    source_id = facts.already_in_prod["web_sources"][0]  # same id on both sides
    with sync_env.dev() as dev:  # the sample's pages are not the subject: only the generated rows ship
        dev.execute("DELETE FROM web_pages WHERE id <> ALL(%s::uuid[])", [facts.already_in_prod["web_pages"]])
    with SyncContext(prod_via(sync_env)) as ctx, sync_env.dev() as dev, sync_env.prod() as prod:

        examples = []

        @PROFILE
        @given(batch=rows)
        def round_trip(batch: list[dict[str, Any]]) -> None:
            ids = _insert(dev, source_id, batch)
            examples.append(ids)
            try:
                export = run_export(ctx, "web_pages", scope="delta")
                outcome = run_load(ctx, "web_pages", export, declared_deps=DECLARED_DEPS)
                assert (export.rows, outcome.result.inserted, outcome.result.rejected) == (len(ids), len(ids), 0)
                assert rows_by_id(prod, "web_pages", ids, COMPARED) == rows_by_id(dev, "web_pages", ids, COMPARED)
            finally:  # a failed example must not ship again with the next ones
                dev.execute("DELETE FROM web_pages WHERE id = ANY(%s::uuid[])", [ids])

        round_trip()
        assert len(examples) >= PROFILE.max_examples
