"""``ssh_psql``: the runbook's way, a ``psql`` started on the VPS (e.g. ``docker exec -i <container> psql ...``)
and driven over a paramiko exec channel. For when no database password is at hand.

Each transaction is one psql script sent on stdin, compressed (zstd when the VPS has it, else gzip)
and decompressed on the VPS in front of the psql command. One psql serves the whole session where the VPS has
GNU ``head`` (``psql_channel.py``: a frame per script); else each script gets its own psql and exec channel.
psql runs with ``ON_ERROR_STOP``: an error stops the script before ``COMMIT`` and the server rolls the
transaction back.

psql ends inline COPY data at any line that is exactly ``\\.``, even inside a quoted CSV field. Such
lines are replaced by a random token on the way out and restored inside the staging table before the
rows are cast, so text survives exactly. Because of that restore step, this transport always loads
through the staging table (no direct COPY into the prod table).

psql's output is read by its structure, never by its words (prod's ``lc_messages`` translates them): an
error by the SQLSTATE that ``VERBOSITY=verbose`` prints (``PsqlError.sqlstate``, classified as a psycopg
error's is), a lost connection without one by psql's exit status 2, and results and the commit by marker
lines that count only as whole lines of their own.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from psycopg import sql

from websync_dagster.core.errors import ConfigError
from websync_dagster.core.settings import Settings, reveal
from websync_dagster.transport.base import (
    BeforeCommit,
    CopyIn,
    ProdSession,
    Query,
    Results,
    Statement,
    Step,
    as_json_rows,
    check_step_names,
    session_application_name,
)
from websync_dagster.transport.direct import session_timeouts
from websync_dagster.transport.psql_channel import OnePsql
from websync_dagster.transport.psql_errors import PsqlError, psql_error
from websync_dagster.transport.psql_script import (
    DONE,
    HELD,
    Compressor,
    committed,
    escape_terminator_lines,
    marked_query,
    marked_results,
    output_lines,
    restore_terminator_lines,
    sql_text,
)
from websync_dagster.transport.ssh import RemoteResult, SshConnection, SshError, SshTransport, remote_failure

#: ``VERBOSITY=verbose``: libpq prints each server error as ``<severity>:  <SQLSTATE>: <message>``
PSQL_OPTIONS = "-X -q -A -t -v ON_ERROR_STOP=1 -v VERBOSITY=verbose"


class PsqlSession(ProdSession):
    supports_fast_path = False
    name = "ssh_psql"

    def __init__(self, ssh: SshConnection, command: str, compression: str, idle_timeout_s: int = 60,
                 lock_timeout_s: float = 600, application_name: str = "websync", one_psql: bool = False) -> None:
        """Every psql this session starts first sets websync's own timeouts (``session_timeouts``, as the
        psycopg sessions do), whatever prod's database or role sets: no ``statement_timeout`` (a load takes as
        long as its data), ``lock_timeout`` of ``lock_timeout_s`` (WEBSYNC_WAIT_S: a lock prod holds elsewhere
        is waited for that long, then the unit fails saying so; 0 means do not wait, and since Postgres reads
        a lock_timeout of 0 as no limit, it becomes 1 ms, the shortest wait it can be told),
        ``idle_in_transaction_session_timeout`` of ``idle_timeout_s`` (prod ends the transaction if psql
        waits that long for the rest of a script: the client paused or gone), and ``application_name``, by
        which another session finds this one's backends (``SET`` in the script: the remote command is the
        user's, and ``docker exec`` passes no PGOPTIONS).

        ``one_psql``: one psql serves the whole session (``psql_channel.py``; the VPS needs GNU ``head``), its
        timeouts set once; else each transaction and query starts its own psql on a new exec channel."""
        self.ssh = ssh
        self.command = command
        self.compression = compression
        self._raw_bytes = 0
        self._sent_bytes = 0
        self.timeouts = session_timeouts(idle_timeout_s=idle_timeout_s, wait_s=lock_timeout_s)
        self.application_name = application_name
        self.one: OnePsql | None = (OnePsql(ssh.open_exec, self._psql(), compression, self._prelude(),
                                            lambda ended: self._fail(ended.status, ended.stderr))
                                    if one_psql else None)

    @property
    def one_psql(self) -> bool:
        return self.one is not None

    @property
    def raw_bytes(self) -> int:
        """Bytes of the scripts sent to prod, before compression."""
        return self._raw_bytes + (self.one.raw_bytes if self.one else 0)

    @property
    def sent_bytes(self) -> int:
        """Bytes of the scripts sent to prod, compressed."""
        return self._sent_bytes + (self.one.sent_bytes if self.one else 0)

    def connection_lost(self, exc: BaseException) -> bool:
        """Also: the SSH connection that carries psql is gone (its scripts cannot have committed)."""
        transport = self.ssh.client.get_transport()
        if transport is None or not transport.is_active():
            return True
        return super().connection_lost(exc)

    def _psql(self) -> str:
        return f"{self.command} {PSQL_OPTIONS}"

    def _prelude(self) -> bytes:
        """The settings every psql of this session starts with, their output silenced."""
        settings: dict[str, int | str] = {
            **self.timeouts, "application_name": self.application_name,
            "client_encoding": "UTF8",  # what websync sends and parses, whatever the VPS's locale says
        }
        statements = (sql.SQL("SET {} = {};\n").format(sql.SQL(name), sql.Literal(value))
                      for name, value in settings.items())
        return ("\\o /dev/null\n" + "".join(map(sql_text, statements)) + "\\o\n").encode()

    def _fail(self, status: int, stderr: bytes) -> PsqlError:
        text = self.ssh.redactor(stderr.decode("utf-8", "replace"))
        where = f"prod (psql on {self.ssh.settings.host})"
        if status == 0 and self.one is not None and not text.strip():
            # psql ends well at the end of its input: the loop on the VPS stopped feeding it mid-script
            decompress = Compressor(self.compression).remote_command
            return PsqlError(f"{where}: psql's input ended before the script did: the VPS's {decompress} (or head) "
                             "failed to feed it; nothing of the script was committed")
        otherwise = remote_failure(self.command, RemoteResult(status, b"", stderr), self.ssh.redactor)
        return psql_error(status, text, where=where, otherwise=otherwise)

    def check_reachable(self) -> None:
        """Fail now, with psql's own words, if the remote command cannot reach the database."""
        if self.one is not None:
            self.one.start()
            return
        probe = self.ssh.run(self._psql(), self._prelude() + b"SELECT 1;\n")
        if probe.status != 0:
            raise self._fail(probe.status, probe.stderr)

    def _run_script(self, script: bytes) -> bytes:
        result = self.ssh.run(self._psql(), self._prelude() + script)
        if result.status != 0:
            raise self._fail(result.status, result.stderr)
        return result.stdout

    def query(self, query: sql.Composable) -> list[dict[str, Any]]:
        if self.one is not None:
            return self.run_transaction([Query("rows", query)]).rows("rows")
        out = self._run_script((sql_text(as_json_rows(query)) + ";\n").encode())
        text = out.decode("utf-8").strip()
        if not text:
            raise PsqlError(f"prod (psql on {self.ssh.settings.host}) returned nothing for a query")
        return json.loads(text)

    def copy_out(self, query: sql.Composable) -> Iterator[bytes]:
        if self.one is not None:
            marker = f"__websync_copied_{secrets.token_hex(8)}__"  # no row's line can be it
            for lines in self.one.stream((sql_text(query) + f";\n\\echo {marker}\n").encode(), marker):
                if lines:
                    yield ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
            return
        channel = self.ssh.open_exec(self._psql())
        channel.sendall(self._prelude() + (sql_text(query) + ";\n").encode())
        channel.shutdown_write()
        stderr: list[bytes] = []
        reader = threading.Thread(target=lambda: stderr.append(channel.makefile_stderr("rb").read()), daemon=True)
        reader.start()
        try:
            while data := channel.recv(1 << 16):
                yield data
            status = channel.recv_exit_status()
            reader.join()
            if status != 0:
                raise self._fail(status, b"".join(stderr))
        finally:
            channel.close()

    @property
    def holds_commit(self) -> bool:  # type: ignore[override]
        """One psql keeps its transaction open between two scripts; a psql per transaction is sent its whole."""
        return self.one is not None

    def _script(self, steps: Sequence[Step], prelude: bool = True, *, commit: bool = True) -> Iterator[bytes]:
        yield (self._prelude() if prelude else b"") + b"\\o /dev/null\nBEGIN;\n"
        for step in steps:
            if isinstance(step, Statement):
                yield (sql_text(step.query) + ";\n").encode()
            elif isinstance(step, Query):
                yield marked_query(step.name, step.query)
            elif isinstance(step, CopyIn):
                token = f"@@websync-dot-line-{secrets.token_hex(8)}@@"
                found = [False]
                yield (sql_text(step.query) + ";\n").encode()
                yield from escape_terminator_lines(step.source(), token.encode(), found)
                yield b"\\.\n"
                if found[0]:
                    yield restore_terminator_lines(step, token)
                # psql (quiet) does not print COPY's row count; it only ever copies into a fresh staging
                # table, whose row count is the COPY's
                yield marked_query(step.name, sql.SQL("SELECT count(*) AS rows FROM {}").format(step.table))
        yield f"COMMIT;\n\\o\n\\echo {DONE}\n".encode() if commit else f"\\o\n\\echo {HELD}\n".encode()

    def close(self) -> None:
        if self.one is not None:
            self.one.close()

    def run_transaction(self, steps: Sequence[Step], before_commit: BeforeCommit | None = None) -> Results:
        check_step_names(steps)
        if before_commit is not None:
            return self._held_transaction(steps, before_commit)
        if self.one is not None:
            lines = self.one.run(self._script(steps, prelude=False), DONE)
            return marked_results("\n".join([*lines, DONE]))
        compressor = Compressor(self.compression)
        channel = self.ssh.open_exec(f"{compressor.remote_command} | {self._psql()}")
        outputs: dict[str, bytes] = {}

        def read(name: str, stream: Any) -> None:
            outputs[name] = stream.read()

        readers = [
            threading.Thread(target=read, args=("out", channel.makefile("rb")), daemon=True),
            threading.Thread(target=read, args=("err", channel.makefile_stderr("rb")), daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            for piece in self._script(steps):
                if channel.exit_status_ready():
                    break  # psql stopped on an error: no point sending the rest
                data = compressor.compress(piece)
                if data:
                    channel.sendall(data)
            if not channel.exit_status_ready():
                channel.sendall(compressor.flush())
            channel.shutdown_write()
            status = channel.recv_exit_status()
            for reader in readers:
                reader.join()
        finally:
            channel.close()
            self._raw_bytes += compressor.raw_bytes
            self._sent_bytes += compressor.sent_bytes
        out = outputs.get("out", b"").decode("utf-8")
        stderr = outputs.get("err", b"")
        if status != 0:
            raise self._fail(status, stderr)
        if not committed(output_lines(out)):  # psql read the end of its input before COMMIT: rolled back
            said = self.ssh.redactor(stderr.decode("utf-8", "replace")).strip().splitlines()
            raise PsqlError(f"prod (psql on {self.ssh.settings.host}) ended before the transaction committed, "
                            f"so it was rolled back ({said[-1].strip() if said else 'nothing on stderr'})")
        return marked_results(out)

    def _held_transaction(self, steps: Sequence[Step], before_commit: BeforeCommit) -> Results:
        """The steps as one script that ends before COMMIT, ``before_commit`` on their results, then COMMIT as a
        second: the one psql keeps the transaction open meanwhile. If ``before_commit`` raises, that psql is closed
        (prod rolls the transaction back as it ends) and COMMIT never sent."""
        if self.one is None:
            raise ValueError("a psql per transaction cannot hold its transaction open (holds_commit is False)")
        lines = self.one.run(self._script(steps, prelude=False, commit=False), HELD)
        results = marked_results("\n".join([*lines, HELD]), end=HELD)
        try:
            before_commit(results)
        except BaseException:
            self.one.close()
            raise
        self.one.run([f"COMMIT;\n\\echo {DONE}\n".encode()], DONE)
        return results


class SshPsqlTransport(SshTransport):
    name = "ssh_psql"
    sends_compressed = True  # the script stream is zstd (or gzip)

    def __init__(self, settings: Settings) -> None:
        if settings.ssh is None or not settings.prod_psql:
            raise ConfigError("ssh_psql needs VPS_HOST and WEBSYNC_PROD_PSQL")
        super().__init__(settings)
        self.command = reveal(settings.prod_psql) or ""

    def describe(self) -> str:
        return f"{self._via()}: {self.redactor(self.command)}"

    @contextlib.contextmanager
    def session(self) -> Iterator[PsqlSession]:
        with self._connection() as ssh:
            found = vps_tools(ssh)
            compression = next((tool for tool in ("zstd", "gzip") if tool in found), None)
            if compression is None:
                raise SshError(f"neither zstd nor gzip on the VPS {ssh.settings.host}: ssh_psql sends compressed data")
            one_psql = "gnu-head" in found and not self.settings.prod_psql_per_transaction
            session = PsqlSession(ssh, self.command, compression, idle_timeout_s=self.settings.prod_idle_timeout_s,
                                  lock_timeout_s=self.settings.wait_s,
                                  application_name=session_application_name(), one_psql=one_psql)
            try:
                session.check_reachable()
                yield session
            finally:
                session.close()


#: one remote command for what ssh_psql needs of the VPS: a decompressor, and GNU head (which reads exactly the
#: bytes it is asked for from a pipe, as one psql per session needs: psql_channel.py)
_TOOLS_PROBE = ('for c in zstd gzip; do command -v "$c" >/dev/null 2>&1 && echo "$c"; done; '
                'head --version 2>/dev/null | grep -q "GNU coreutils" && echo gnu-head; true')


def vps_tools(ssh: SshConnection) -> set[str]:
    """Which of ``zstd``, ``gzip`` and ``gnu-head`` the VPS has."""
    return set(ssh.run(_TOOLS_PROBE).stdout.decode("utf-8", "replace").split())
