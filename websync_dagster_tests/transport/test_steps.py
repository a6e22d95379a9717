"""The transaction seam without a server: named steps, results read by name, psql's output parsed by name."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from websync_dagster.core.errors import TableSyncError
from websync_dagster.transport.base import CopyIn, ProdSession, Query, Results, Statement, check_step_names
from websync_dagster.transport.psql_script import escape_terminator_lines, marked_results


def test_results_are_read_by_name_and_a_missing_name_says_which_exist():
    results = Results(before=[{"n": 3}], skipped=[{"key_name": "k", "n": 1}, {"key_name": "j", "n": 2}])
    assert results.value("before", "n") == 3
    assert [r["n"] for r in results.rows("skipped")] == [1, 2]
    with pytest.raises(KeyError, match="no result named 'after' in this transaction \\(steps: before, skipped\\)"):
        results.rows("after")
    with pytest.raises(ValueError, match="step 'skipped' returned 2 rows, not one"):
        results.value("skipped", "n")


def test_step_names_are_words_used_once():
    select = sql.SQL("SELECT 1")
    check_step_names([Statement(select), Query("a", select), CopyIn("b", sql.Identifier("t"), ("c",), list)])
    with pytest.raises(ValueError, match="used twice in one transaction: a"):
        check_step_names([Query("a", select), Query("a", select)])
    with pytest.raises(ValueError, match="must be words"):
        check_step_names([Query("a b", select)])


def test_psql_output_is_split_by_the_names_in_its_marker_lines():
    out = ('__websync_result_before__\n[{"n": 1}]\n__websync_result_staged__\n[{"rows": 2}]\n'
           '__websync_result_rejects__\n[]\n__websync_committed__\n')
    assert marked_results(out) == {"before": [{"n": 1}], "staged": [{"rows": 2}], "rejects": []}


def test_lines_that_end_psql_copy_data_are_swapped_for_the_token_and_flagged():
    found = [False]
    chunks = [b'a,"x\n\\', b'.\ny"\n', b"\\.\n", b'b,"\\.']
    out = b"".join(escape_terminator_lines(chunks, b"TOKEN", found))
    assert out == b'a,"x\nTOKEN\ny"\nTOKEN\nb,"\\.\n' and found == [True]


class _Session(ProdSession):
    """The seam's default classification of errors, without a connection."""

    def query(self, query):  # pragma: no cover - not used
        raise NotImplementedError

    def copy_out(self, query):  # pragma: no cover - not used
        raise NotImplementedError

    def run_transaction(self, steps):  # pragma: no cover - not used
        raise NotImplementedError


@pytest.mark.parametrize(("sqlstate", "lost"), [
    ("25P03", True),   # idle-in-transaction timeout (an InternalError to psycopg): prod ended the session
    ("57P01", True),   # admin shutdown, pg_terminate_backend
    ("08006", True),   # connection failure
    ("53100", False),  # disk full: prod refuses the work, a new session would too
    ("23505", False),  # a unique violation: a row's fault
])
def test_a_lost_link_is_told_from_prod_refusing_the_work(sqlstate, lost):
    error = psycopg.errors.lookup(sqlstate)("message")
    wrapped = TableSyncError("web_pages", "load into prod failed")
    wrapped.__cause__ = error
    assert _Session().connection_lost(wrapped) is lost
    closed_under_the_client = psycopg.OperationalError("server closed the connection unexpectedly")
    assert _Session().connection_lost(closed_under_the_client)
    assert not _Session().connection_lost(KeyboardInterrupt())
