"""Which errors are a row's (prod refused it: the row goes to the reject file) and which fail the unit."""

from __future__ import annotations

import psycopg

#: SQLSTATE classes of the errors a row can cause (its values, prod's constraints, indexes, triggers) and
#: their PL/pgSQL condition names, which the blocks in sql/ catch (a test holds the two equal); any other
#: error (connection, resources, schema) rolls the unit in flight back and fails the table (the units
#: committed before stay)
ROW_REFUSALS = {
    "22": "data_exception",
    "23": "integrity_constraint_violation",
    "44": "with_check_option_violation",
    "54": "program_limit_exceeded",
    "P0": "plpgsql_error",  # RAISE in a trigger
}


def refused_by_a_row(exc: BaseException) -> bool:
    """Whether prod refused the data (a row can cause this), rather than failed (connection, resources...)."""
    state = getattr(exc, "sqlstate", None)
    return isinstance(exc, psycopg.Error) and bool(state) and state[:2] in ROW_REFUSALS
