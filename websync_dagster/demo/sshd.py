"""A real OpenSSH server (``/usr/sbin/sshd``) on 127.0.0.1 for the tests and `make demo-ssh`.

``start_sshd(workdir)`` starts an unprivileged-port sshd bound to 127.0.0.1 with its own host key, two
dedicated system users (``websync``: key auth, ``websyncpw``: password auth) and ready-made client files
(keys, known_hosts variants).  It must run as root (it creates users and sshd needs root for logins).

Gotchas handled here:

* sshd needs its privilege-separation directory ``/run/sshd``; it is created if missing.
* ``UsePAM no``: passwords are checked against /etc/shadow directly (we are root), and the Debian PAM
  session stack (``pam_loginuid`` etc.) is avoided, which fails in some containers.  Without PAM sshd
  refuses *any* login to an account whose shadow password starts with ``!`` (what ``useradd`` leaves),
  so the key user gets ``*`` (no password, but not locked).
* ``StrictModes no`` and the authorized_keys file is owned by the login user (mode 600): sshd reads it
  with the user's uid, so the workdir and its ancestors must be traversable (o+x) by that user.
  pytest's ``/tmp/pytest-of-root`` is mode 700, so ``start_sshd`` adds o+x (search only, never read)
  to the ancestors of ``workdir`` and of every ``env_path`` entry; see ``make_traversable``.
* PATH for remote commands: ``SetEnv PATH=...`` in sshd_config (OpenSSH >= 7.8).  It is applied after
  sshd's default PATH, and bash started for an exec channel is non-interactive and non-login, so it
  keeps it.
* sshd's log (``-e``) goes to ``<workdir>/sshd.log``, not to a pipe that nobody drains (a full pipe
  would block sshd).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from websync_dagster.demo.ports import free_port

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
PRIVSEP_DIR = Path("/run/sshd")

KEY_USER = "websync"
PASSWORD_USER = "websyncpw"
HOST = "127.0.0.1"

# The password of PASSWORD_USER is random but shared by all servers on this machine (they share the
# system user), so it is kept in a root-only file and only set once; this keeps concurrent test
# processes (pytest-xdist) from invalidating each other's password.
PASSWORD_FILE = Path("/var/lib/websync-test-sshd/password")


class SshdUnavailable(RuntimeError):
    """/usr/sbin/sshd (or another prerequisite such as root privileges) is missing."""


@dataclass
class SshServer:
    host: str
    port: int
    user: str
    password: str
    password_user: str
    key_file: Path
    key_passphrase: str | None
    encrypted_key_file: Path
    host_key_sha256: str
    known_hosts: Path
    hashed_known_hosts: Path
    wrong_known_hosts: Path
    workdir: Path
    process: subprocess.Popen = field(repr=False)
    log_file: Path = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """sshd's log output so far (useful in assertion messages)."""
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def kill_sessions(self) -> int:
        """SIGKILL every per-connection sshd child of the listener, together with its descendants
        (the unprivileged session process that holds the socket, and the user's commands).

        The listener keeps running and accepts new connections.  Returns the number of connections
        (direct children of the listener) killed."""
        import psutil

        try:
            listener = psutil.Process(self.process.pid)
            children = listener.children(recursive=False)
        except psutil.NoSuchProcess:
            return 0
        victims: list[psutil.Process] = []
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                victims.extend(child.children(recursive=True))
            victims.append(child)
        for proc in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)
        # Wait until they are gone; a zombie counts as gone (its socket is closed already, and the
        # orphaned session process may be reaped late by whatever PID 1 is in this container).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            alive = []
            for proc in victims:
                with contextlib.suppress(psutil.NoSuchProcess):
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        alive.append(proc)
            if not alive:
                break
            time.sleep(0.01)
        return len(children)

    def _live_children(self) -> list:
        import psutil

        try:
            children = psutil.Process(self.process.pid).children(recursive=False)
        except psutil.NoSuchProcess:
            return []
        live = []
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.status() != psutil.STATUS_ZOMBIE:
                    live.append(child)
        return live

    def stop(self) -> None:
        """Stop the listener and kill remaining sessions.  Sessions whose clients already disconnected
        get up to 1 s to wind down by themselves (killing them mid-exit leaves orphaned zombies)."""
        if self.process.poll() is None:
            deadline = time.monotonic() + 1
            while self._live_children() and time.monotonic() < deadline:
                time.sleep(0.02)
            self.kill_sessions()
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    return res


def make_traversable(path: Path | str) -> None:
    """Add o+x (directory search, not read) to ``path`` (if it is a directory) and all its ancestors,
    so the test users can reach files below it.  Needed because the remote commands and sshd's
    authorized_keys lookup run as ``websync``/``websyncpw`` while test files live under root-only dirs
    such as /tmp/pytest-of-root."""
    p = Path(path).resolve()
    for d in [p, *p.parents] if p.is_dir() else list(p.parents):
        try:
            st = d.stat()
        except OSError:
            continue
        if not st.st_mode & stat.S_IXOTH:
            os.chmod(d, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _shadow_field(user: str) -> str:
    with open("/etc/shadow") as f:
        for line in f:
            parts = line.split(":")
            if parts[0] == user:
                return parts[1]
    return ""


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        _run(["useradd", "--system", "--create-home", "--home-dir", f"/home/{name}",
              "--shell", "/bin/bash", "--user-group", name])
        pw = pwd.getpwnam(name)
    if pw.pw_shell != "/bin/bash":
        _run(["usermod", "--shell", "/bin/bash", name])
        pw = pwd.getpwnam(name)
    home = Path(pw.pw_dir)
    if not home.is_dir():
        home.mkdir(parents=True, mode=0o755)
        os.chown(home, pw.pw_uid, pw.pw_gid)
    return pw


def _ensure_users() -> str:
    """Create the test users if needed; return the password of PASSWORD_USER."""
    _ensure_user(KEY_USER)
    _ensure_user(PASSWORD_USER)
    # Without PAM, sshd refuses even pubkey logins for "locked" accounts (shadow field starting with "!").
    if _shadow_field(KEY_USER).startswith("!"):
        _run(["usermod", "-p", "*", KEY_USER])
    PASSWORD_FILE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(PASSWORD_FILE.parent / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        password = PASSWORD_FILE.read_text().strip() if PASSWORD_FILE.exists() else ""
        shadow = _shadow_field(PASSWORD_USER)
        if not password or shadow[:1] in ("", "!", "*"):
            password = password or secrets.token_urlsafe(18)
            _run(["chpasswd"], input=f"{PASSWORD_USER}:{password}\n")
            fd = os.open(PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
    return password


def _keygen(path: Path, passphrase: str = "", comment: str = "websync-test") -> None:
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    _run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(path)])


def _fingerprint(pub: Path) -> str:
    # "256 SHA256:abc... comment (ED25519)"
    out = _run([SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(pub)]).stdout.split()
    return next(tok for tok in out if tok.startswith("SHA256:"))


def _hash_host(hostname: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, hostname.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _wait_for_banner(proc: subprocess.Popen, port: int, timeout: float) -> bool:
    """True once the port answers with an SSH banner, False if sshd exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _q(p: Path | str) -> str:
    return '"' + str(p) + '"'


def start_sshd(workdir: Path, *, env_path: str | None = None) -> SshServer:
    """Start sshd on a free 127.0.0.1 port; files go to ``workdir`` (created if missing)."""
    if not SSHD.exists():
        raise SshdUnavailable(f"{SSHD} not found (run .ci/install-sshd.sh)")
    if os.geteuid() != 0:
        raise SshdUnavailable("starting a test sshd requires root (creates users, logs them in)")
    if shutil.which(SSH_KEYGEN) is None:
        raise SshdUnavailable("ssh-keygen not found")

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    password = _ensure_users()
    key_pw = pwd.getpwnam(KEY_USER)

    # Host key and a different "wrong" host key.
    host_key = workdir / "ssh_host_ed25519_key"
    _keygen(host_key, comment="websync-test-host")
    host_pub = (workdir / "ssh_host_ed25519_key.pub").read_text().split()
    host_key_line = f"{host_pub[0]} {host_pub[1]}"
    wrong_key = workdir / "wrong_host_ed25519_key"
    _keygen(wrong_key, comment="websync-test-wrong-host")
    wrong_pub = (workdir / "wrong_host_ed25519_key.pub").read_text().split()

    # Client keys: one plain, one passphrase-protected; both authorized for KEY_USER.
    key_file = workdir / "id_ed25519"
    _keygen(key_file)
    passphrase = secrets.token_urlsafe(12)
    encrypted_key_file = workdir / "id_ed25519_encrypted"
    _keygen(encrypted_key_file, passphrase=passphrase)
    authorized_keys = workdir / f"authorized_keys.{KEY_USER}"
    authorized_keys.write_text(
        (workdir / "id_ed25519.pub").read_text() + (workdir / "id_ed25519_encrypted.pub").read_text()
    )
    os.chown(authorized_keys, key_pw.pw_uid, key_pw.pw_gid)
    os.chmod(authorized_keys, 0o600)
    make_traversable(workdir)
    if env_path:
        for entry in env_path.split(":"):
            if entry and Path(entry).exists():
                make_traversable(entry)

    pid_file = workdir / "sshd.pid"
    log_file = workdir / "sshd.log"
    config = workdir / "sshd_config"
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        lines = [
            f"ListenAddress {HOST}",
            f"Port {port}",
            f"HostKey {_q(host_key)}",
            f"PidFile {_q(pid_file)}",
            f"AuthorizedKeysFile {_q(workdir / 'authorized_keys.%u')}",
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication yes",
            "PermitEmptyPasswords no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin no",
            f"AllowUsers {KEY_USER} {PASSWORD_USER}",
            "AllowTcpForwarding yes",
            "PermitOpen any",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitTTY yes",
            "ClientAliveInterval 15",
            "ClientAliveCountMax 4",
            "LoginGraceTime 30",
            "MaxStartups 100",
            "MaxSessions 64",
            "MaxAuthTries 10",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
        ]
        if env_path:
            lines.append(f"SetEnv {_q('PATH=' + env_path)}")
        config.write_text("\n".join(lines) + "\n")
        os.chmod(config, 0o600)

        _run([str(SSHD), "-t", "-f", str(config)])  # config syntax check, clear error message
        pid_file.unlink(missing_ok=True)
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config), "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        if _wait_for_banner(proc, port, timeout=10):
            return SshServer(
                host=HOST,
                port=port,
                user=KEY_USER,
                password=password,
                password_user=PASSWORD_USER,
                key_file=key_file,
                key_passphrase=passphrase,
                encrypted_key_file=encrypted_key_file,
                host_key_sha256=_fingerprint(workdir / "ssh_host_ed25519_key.pub"),
                known_hosts=_write(workdir / "known_hosts", f"[{HOST}]:{port} {host_key_line}\n"),
                hashed_known_hosts=_write(
                    workdir / "known_hosts.hashed", f"{_hash_host(f'[{HOST}]:{port}')} {host_key_line}\n"
                ),
                wrong_known_hosts=_write(
                    workdir / "known_hosts.wrong", f"[{HOST}]:{port} {wrong_pub[0]} {wrong_pub[1]}\n"
                ),
                workdir=workdir,
                process=proc,
                log_file=log_file,
            )
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        last_error = log_file.read_text(errors="replace")
        if "Address already in use" not in last_error:
            break
    raise RuntimeError(f"sshd did not start listening within 10 s; log:\n{last_error}")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
