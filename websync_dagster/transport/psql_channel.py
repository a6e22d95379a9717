"""One psql on the VPS for a whole ``ssh_psql`` session: one exec channel, one ``docker exec``, one login.

Each transaction's script is one compressed frame (zstd or gzip), sent as length-prefixed chunks and ended
by a chunk of length 0. On the VPS a shell loop hands each frame's chunks to a decompressor of its own
(``head -c`` reads exactly a chunk's bytes), whose output goes to the one psql that serves every frame. A
decompressor fed by an open pipe would wait for a full buffer before it gives psql the end of a script;
one that sees its frame end at once gives psql the ``COMMIT`` at once.

psql stops at the first error (``ON_ERROR_STOP``): its connection closes, so the transaction rolls back. The
loop then stops too (its next write to psql fails), the channel ends with psql's exit status, and the
session starts a new psql for its next transaction. A psql that ended between transactions (prod ended an
idle session) is replaced the same way, before anything is sent to it.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import paramiko

from websync_dagster.transport.psql_script import READY, Compressor

#: the loop on the VPS: ``{decompress}`` reads one frame (its chunks, up to a length 0) and ``{psql}`` is the
#: user's psql command with websync's options; ``|| exit`` ends the loop once psql (hence the decompressor's
#: pipe) is gone, the complaints of head and the decompressor silenced (stderr is for psql's errors). The
#: shell keeps the channel's stdout open after psql exits, so psql's end is told by a line of its own,
#: ``{ended}`` (random per psql: no output line of psql can be it) and psql's exit status.
FRAMED_LOOP = (
    'while IFS= read -r _ws_frame; do '
    '{{ while IFS= read -r _ws_n && [ "$_ws_n" != 0 ]; do head -c "$_ws_n" 2>/dev/null || exit 1; '
    'done; }} | {decompress} 2>/dev/null || exit 1; done | {{ {psql}; _ws_s=$?; echo "{ended} $_ws_s"; exit $_ws_s; }}'
)
#: compressed bytes per chunk: a ``head`` process per chunk on the VPS, so not too small
CHUNK_BYTES = 1 << 18


@dataclass(frozen=True)
class Ended:
    """psql's end: its exit status and what it printed on stderr since the transaction began."""

    status: int
    stderr: bytes


class PsqlChannel:
    """A psql process on the VPS, fed frame by frame; its output read line by line (only ``\\n`` ends one)."""

    def __init__(self, channel: paramiko.Channel, ended: str) -> None:
        self.channel = channel
        self.ended = ended
        self._lines: list[str] = []
        self._stderr = bytearray()
        self._eof = False
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for reader in self._readers:
            reader.start()

    @classmethod
    def start(cls, open_exec: Callable[[str], paramiko.Channel], psql: str, decompress: str) -> PsqlChannel:
        ended = f"__websync_psql_ended_{secrets.token_hex(8)}__"
        return cls(open_exec(FRAMED_LOOP.format(decompress=decompress, psql=psql, ended=ended)), ended)

    def _read_out(self) -> None:
        """Lines as they come, until psql's end line or the channel's end; whatever stops the reading (the SSH
        connection gone) ends the output too, so that no reader waits for lines that will not come. Bytes that
        are not UTF-8 (none should be: the session's client_encoding is UTF8) survive as surrogate escapes."""
        partial = b""
        try:
            while data := self.channel.recv(1 << 16):
                *whole, partial = (partial + data).split(b"\n")
                lines = [line.decode("utf-8", "surrogateescape") for line in whole]
                end = next((i for i, line in enumerate(lines) if line.startswith(self.ended + " ")), None)
                with self._changed:
                    self._lines.extend(lines if end is None else lines[:end])
                    self._changed.notify_all()
                if end is not None:
                    partial = b""
                    return
        finally:
            with self._changed:
                if partial:
                    self._lines.append(partial.decode("utf-8", "surrogateescape"))
                self._eof = True
                self._changed.notify_all()

    def _read_err(self) -> None:
        while data := self.channel.recv_stderr(1 << 16):
            with self._changed:
                self._stderr.extend(data)

    @property
    def alive(self) -> bool:
        with self._changed:
            return not self._eof and not self.channel.closed

    def stderr_mark(self) -> int:
        with self._changed:
            return len(self._stderr)

    def send_frame(self, pieces: Iterable[bytes]) -> None:
        """Send one frame (the compressed pieces of one script) as chunks, then its end. Stops early, without
        an error, once psql has ended (it stopped on an error: the rest would not be read)."""
        self.channel.sendall(b"t\n")
        pending = bytearray()
        for piece in pieces:
            pending.extend(piece)
            if len(pending) >= CHUNK_BYTES:
                if not self.alive:
                    return
                self._send_chunk(bytes(pending))
                pending.clear()
        if pending and self.alive:
            self._send_chunk(bytes(pending))
        if self.alive:
            self.channel.sendall(b"0\n")

    def _send_chunk(self, data: bytes) -> None:
        self.channel.sendall(b"%d\n" % len(data) + data)

    def lines_until(self, marker: str) -> list[str] | None:
        """psql's output lines up to the line ``marker`` (taken, the marker left out), or None when psql ended
        first."""
        with self._changed:
            while True:
                if marker in self._lines:
                    at = self._lines.index(marker)
                    lines, self._lines = self._lines[:at], self._lines[at + 1:]
                    return lines
                if self._eof:
                    return None
                self._changed.wait(1.0)

    def stream_until(self, marker: str) -> Iterator[list[str]]:
        """psql's output lines as they come, in batches, up to the line ``marker`` (taken, left out); ends early
        when psql ended (``alive`` is then false)."""
        while True:
            with self._changed:  # never held while the reader of the batch works on it
                while not self._lines and not self._eof:
                    self._changed.wait(1.0)
                found = marker in self._lines
                if found:
                    at = self._lines.index(marker)
                    batch, self._lines = self._lines[:at], self._lines[at + 1:]
                else:
                    batch, self._lines = self._lines, []
                ended = self._eof
            if batch:
                yield batch
            if found or ended:
                return

    def end(self, since: int = 0) -> Ended:
        """Close psql's input, wait for its exit, and return its status and its stderr from ``since``."""
        with contextlib.suppress(OSError, EOFError):
            self.channel.shutdown_write()
        status = self.channel.recv_exit_status()
        for reader in self._readers:
            reader.join(timeout=5)
        self.channel.close()
        with self._changed:
            return Ended(status, bytes(self._stderr[since:]))

    def close(self) -> None:
        """The session is over: closing the channel ends the loop's input, and psql exits (a transaction still
        in flight, after an interruption, is rolled back by prod). Never waits."""
        self.channel.close()


class OnePsql:
    """The one psql of a session: started on first use, and again when the last one ended (an error in its
    transaction, or prod ended it while idle). ``prelude`` sets the session's settings once per psql; ``fail``
    turns psql's end into the error to raise."""

    def __init__(self, open_exec: Callable[[str], paramiko.Channel], psql: str, compression: str, prelude: bytes,
                 fail: Callable[[Ended], Exception]) -> None:
        self.open_exec = open_exec
        self.psql = psql
        self.compression = compression
        self.prelude = prelude
        self.fail = fail
        self.raw_bytes = 0
        self.sent_bytes = 0
        self._channel: PsqlChannel | None = None

    def start(self) -> PsqlChannel:
        """The running psql (started, its settings set and the database reached, if there was none)."""
        if self._channel is not None and self._channel.alive:
            return self._channel
        self.close()
        compressor = Compressor(self.compression)
        channel = PsqlChannel.start(self.open_exec, self.psql, compressor.remote_command)
        self._send(channel, compressor, [self.prelude + f"\\echo {READY}\n".encode()])
        if channel.lines_until(READY) is None:
            raise self.fail(channel.end())
        self._channel = channel
        return channel

    def _send(self, channel: PsqlChannel, compressor: Compressor, parts: Iterable[bytes]) -> None:
        def frame() -> Iterator[bytes]:
            for part in parts:
                yield compressor.compress(part)
            yield compressor.flush()

        try:
            channel.send_frame(frame())
        except OSError:
            pass  # the loop on the VPS ended (psql stopped on an error): its status and stderr say why
        finally:
            self.raw_bytes += compressor.raw_bytes
            self.sent_bytes += compressor.sent_bytes

    def run(self, parts: Iterable[bytes], marker: str) -> list[str]:
        """Send one script (which ends by echoing ``marker``) and return psql's output lines before the marker.
        If psql ends first, the error its end says is raised (its transaction was rolled back)."""
        channel = self.start()
        since = channel.stderr_mark()
        self._send(channel, Compressor(self.compression), parts)
        lines = channel.lines_until(marker)
        if lines is None:
            self._channel = None
            raise self.fail(channel.end(since))
        return lines

    def stream(self, script: bytes, marker: str) -> Iterator[list[str]]:
        """Send one script and yield psql's output lines as they come, up to ``marker``; psql's end before the
        marker raises its error."""
        channel = self.start()
        since = channel.stderr_mark()
        self._send(channel, Compressor(self.compression), [script])
        finished = False
        try:
            yield from channel.stream_until(marker)
            finished = True
        finally:
            if not finished:  # the reader stopped early: the rest of the output would be read as the next's
                self.close()
        if not channel.alive:
            self._channel = None
            raise self.fail(channel.end(since))

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
