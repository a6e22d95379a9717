"""Small tables for people: markdown for the Dagster UI, plain text for the terminal.

``text_table`` prints what ``pandas.DataFrame(rows).to_string(index=False)`` printed (the CLI's table
until pandas was dropped from it: importing pandas and numpy was a fifth of a no-op ``websync sync``):
columns right-aligned and one space apart, a numeric column's header one space wider, a float column
with pandas' six decimals less the trailing zeros every value of the column has, ``NaN`` for a
missing value.

Why not ``rich.table`` (rich is a dependency, for the live bars): it needs ``rich.console``, whose import took
0.2-0.5 s (median 0.48 s of 5, in a process that had imported dagster, on this 2-core machine under a test
run's load) on every ``websync`` command that prints a table, a no-op sync included (issue 19 wants that under
1.5 s whole); the bars import it only on a terminal. And scripts read this layout, which has not changed since
pandas printed it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: pandas' display.precision: decimals of a float before the zeros common to the column are trimmed
FLOAT_DIGITS = 6
#: pandas writes a float column in scientific notation when a value is this small (and not 0), or when a
#: value is this large and a formatted value is longer than FLOAT_DIGITS + 6 characters
SMALL, LARGE = 10.0 ** -FLOAT_DIGITS, 1e6
MISSING = "NaN"
_DECIMAL_NUMBER = re.compile(r"^\s*[+-]?[0-9]+\.[0-9]*$")
_ESCAPES = str.maketrans({"\t": "\\t", "\r": "\\r", "\n": "\\n"})


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "_(nothing)_"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines)


def text_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "(nothing)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    formatted = [_column(str(name), [row.get(name) for row in rows]) for name in columns]
    widths = [max(len(cell) for cell in column) for column in formatted]
    return "\n".join(" ".join(column[i].rjust(width) for column, width in zip(formatted, widths, strict=True))
                     for i in range(len(rows) + 1))


def _column(name: str, values: list[Any]) -> list[str]:
    """The column's header and cells, unpadded; a numeric column's header has a leading space."""
    present = [v for v in values if v is not None]
    missing = len(present) < len(values)
    if present and not missing and all(isinstance(v, bool) for v in present):
        return [f" {name}", *(str(v) for v in values)]
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        if missing or any(isinstance(v, float) for v in present):
            return [f" {name}", *_float_cells(values)]
        return [f" {name}", *(f"{v:d}" for v in values)]
    return [name, *(_object_cell(v) for v in values)]


def _object_cell(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return _trim_single_float(f"{value: .{FLOAT_DIGITS}f}")
    return str(value).translate(_ESCAPES)


def _float_cells(values: list[float | None]) -> list[str]:
    cells = _trim_float_zeros(_formatted(values, lambda v: f"{v:.{FLOAT_DIGITS}f}"))
    magnitudes = [abs(v) for v in values if v is not None]
    too_long = max(len(c) for c in cells) > FLOAT_DIGITS + 6
    if any(0 < m < SMALL for m in magnitudes) or (too_long and any(m > LARGE for m in magnitudes)):
        cells = _formatted(values, lambda v: f"{v:.{FLOAT_DIGITS}e}")
    return cells


def _formatted(values: list[float | None], fmt: Callable[[float], str]) -> list[str]:
    return [MISSING if v is None or v != v else fmt(v) for v in values]


def _trim_float_zeros(cells: list[str]) -> list[str]:
    """The trailing zeros that every number of the column has, removed, leaving one decimal."""
    numbers = [_DECIMAL_NUMBER.match(c) is not None for c in cells]
    if not any(numbers):
        return cells
    while all(c.endswith("0") for c, n in zip(cells, numbers, strict=True) if n):
        cells = [c[:-1] if n else c for c, n in zip(cells, numbers, strict=True)]
    return [c + "0" if n and c.endswith(".") else c for c, n in zip(cells, numbers, strict=True)]


def _trim_single_float(cell: str) -> str:
    cell = cell.rstrip("0")
    return cell + "0" if cell.endswith(".") else cell
