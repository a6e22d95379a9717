"""The pieces of a psql script on the ``ssh_psql`` transport: SQL as text, results after marker lines, COPY
data whose ``\\.`` lines are escaped and restored, the stream's compression; and psql's output read back
by those markers (whole lines of their own: ``marked_results``)."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import zstandard
from psycopg import sql

from websync_dagster.transport.base import CopyIn, Results, as_json_rows
from websync_dagster.transport.psql_errors import PsqlError

MARK = "__websync_result_{}__"
MARK_LINE = re.compile(r"__websync_result_(\w+)__")
DONE = "__websync_committed__"
#: echoed at the end of a script that leaves its transaction open for the client to commit (psql.py)
HELD = "__websync_held__"
#: echoed by a session's psql once its settings are set (psql_channel.py)
READY = "__websync_ready__"
_TERMINATOR_LINE = re.compile(rb"^\\\.(?=\r?$)", re.MULTILINE)


def sql_text(query: sql.Composable) -> str:
    return query.as_string(None)


#: zstd level of the script stream: 9 sends ~14% fewer bytes than 3 (0.225 vs 0.262 of the CSV) and still
#: compresses ~4x faster than a 20 Mbit/s uplink drains; above 12 the CPU explodes for 1-2% fewer bytes
ZSTD_LEVEL = 9


class Compressor:
    """Streaming compression of what is sent to the VPS, and the command that undoes it there."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.raw_bytes = 0
        self.sent_bytes = 0
        if kind == "zstd":
            self._obj: Any = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
        else:
            self._obj = zlib.compressobj(1, zlib.DEFLATED, 31)

    @property
    def remote_command(self) -> str:
        return "zstd -dcq" if self.kind == "zstd" else "gzip -dc"

    def compress(self, data: bytes) -> bytes:
        self.raw_bytes += len(data)
        out = self._obj.compress(data)
        self.sent_bytes += len(out)
        return out

    def flush(self) -> bytes:
        out = self._obj.flush()
        self.sent_bytes += len(out)
        return out


def escape_terminator_lines(chunks: Iterable[bytes], token: bytes, found: list[bool]) -> Iterator[bytes]:
    """Replace each line that is exactly ``\\.`` by ``token`` (sets ``found[0]`` when one was seen)."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        carry, whole = data[cut:], data[:cut]
        if whole:
            replaced, n = _TERMINATOR_LINE.subn(token, whole)
            found[0] = found[0] or n > 0
            yield replaced
    if carry:
        replaced, n = _TERMINATOR_LINE.subn(token, carry)
        found[0] = found[0] or n > 0
        yield replaced if replaced.endswith(b"\n") else replaced + b"\n"


def restore_terminator_lines(copy: CopyIn, token: str) -> bytes:
    statements = [
        sql.SQL("UPDATE {t} SET {c} = replace({c}, {token}, {dot}) WHERE strpos({c}, {token}) > 0;\n").format(
            t=copy.table, c=sql.Identifier(c), token=sql.Literal(token), dot=sql.Literal("\\.")
        )
        for c in copy.columns
    ]
    return "".join(sql_text(s) for s in statements).encode()


def marked_query(mark: str, query: sql.Composable) -> bytes:
    """A query whose JSON result is printed after a marker line, between stretches of silenced output."""
    text = sql_text(as_json_rows(query))
    return f"\\o\n\\echo {MARK.format(mark)}\n{text};\n\\o /dev/null\n".encode()


def committed(lines: list[str], end: str = DONE) -> bool:
    """Whether psql's last line of output is the end marker, which it echoes only after ``COMMIT`` succeeded (or,
    ``HELD``, after the last step of a script that leaves the commit to the client)."""
    return bool(lines) and lines[-1] == end


def output_lines(out: str) -> list[str]:
    """psql's output, line by line. Only ``\\n`` ends a line: a value may hold U+2028 and the like, which
    ``splitlines`` would also split on."""
    lines = out.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def marked_results(out: str, end: str = DONE) -> Results:
    """Each marked step's JSON, by the name its marker line carries, up to the end marker.

    Markers count only as whole lines. A result is ``json_agg``'s JSON, which never holds a raw newline
    (JSON escapes it inside a string; json_agg breaks lines only between elements, each line then starting
    with ``{``, ``[`` or a space), so no line of a result is a marker, whatever text the rows hold."""
    lines = output_lines(out)
    if not committed(lines, end):
        raise PsqlError("psql's output did not report that the transaction committed (no end marker line)")
    results = Results()
    name: str | None = None
    body: list[str] = []
    for line in lines[:-1]:
        marker = MARK_LINE.fullmatch(line)
        if marker:
            if name is not None:
                results[name] = json.loads("\n".join(body))
            name, body = marker[1], []
        elif name is not None:
            body.append(line)
        elif line.strip():
            raise PsqlError(f"psql printed something before the first result: {line[:80]!r}")
    if name is not None:
        results[name] = json.loads("\n".join(body))
    return results
