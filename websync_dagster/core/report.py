"""Small tables for people: markdown for the Dagster UI, plain text for the terminal (pandas)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd


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
    return pd.DataFrame(list(rows)).to_string(index=False)
