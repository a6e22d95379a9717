"""paramiko tuned for bulk COPY streams: larger windows and packets, SSH's zlib compression that keeps its
history across packets, and a socket that counts what really crosses the link."""

from __future__ import annotations

import functools
import socket
import zlib

import paramiko
from paramiko.compress import ZlibDecompressor

#: bigger windows and packets than paramiko's defaults (2 MB, 32 KB): fewer round trips and less
#: per-packet Python work on a bulk COPY stream (OpenSSH accepts packets up to 256 KB)
WINDOW_BYTES = 16 * 1024 * 1024
MAX_PACKET_BYTES = 128 * 1024


#: zlib methods of SSH compression (``zlib@openssh.com`` starts after authentication, ``zlib`` at once)
ZLIB_METHODS = ("zlib@openssh.com", "zlib")


class SyncFlushZlibCompressor:
    """SSH's zlib compression that keeps its history from one packet to the next.

    paramiko's ``ZlibCompressor`` ends each packet with ``Z_FULL_FLUSH``, which also empties the history:
    every packet (32 kB) is compressed as if it were the first, and CSV's repeats across packets are sent
    again. ``Z_SYNC_FLUSH`` ends each packet on a byte boundary as SSH requires and keeps the history
    (OpenSSH sends ``Z_PARTIAL_FLUSH``); the peer's inflate reads one stream either way.
    """

    def __init__(self, level: int) -> None:
        self.z = zlib.compressobj(level)

    def __call__(self, data: bytes) -> bytes:
        return self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)


class FastTransport(paramiko.Transport):
    """paramiko's Transport with larger windows for bulk transfers (compression: ``transport_class``)."""

    def __init__(self, sock: socket.socket, **kwargs: object) -> None:
        super().__init__(sock, default_window_size=WINDOW_BYTES, default_max_packet_size=MAX_PACKET_BYTES,
                         **kwargs)  # type: ignore[arg-type]


@functools.cache
def transport_class(level: int) -> type[FastTransport]:
    """A ``FastTransport`` whose zlib compression is ``SyncFlushZlibCompressor`` at ``level`` (0: stored).

    The one use of paramiko's private API, fenced here: the class attribute ``Transport._compression_info``
    (method name -> compressor and decompressor factories), read and overridden for the zlib methods.
    ``websync_dagster_tests/transport/test_paramiko_private.py`` fails if an upgrade changes it, before a
    sync would silently compress the old way or break.
    """
    table = dict(paramiko.Transport._compression_info)
    for name in ZLIB_METHODS:
        table[name] = (functools.partial(SyncFlushZlibCompressor, level), ZlibDecompressor)
    return type(f"FastTransportZlib{level}", (FastTransport,), {"_compression_info": table})


class CountingSocket(socket.socket):
    """A TCP socket that counts the bytes it moves: what really crosses the link, after SSH compression."""

    sent = 0
    received = 0

    def send(self, data, *args):  # type: ignore[no-untyped-def, override]
        n = super().send(data, *args)
        self.sent += n
        return n

    def sendall(self, data, *args):  # type: ignore[no-untyped-def, override]
        super().sendall(data, *args)
        self.sent += len(data)

    def recv(self, size, *args):  # type: ignore[no-untyped-def, override]
        data = super().recv(size, *args)
        self.received += len(data)
        return data


def open_socket(host: str, port: int, timeout: float) -> CountingSocket:
    """Connect like socket.create_connection, into a CountingSocket."""
    error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = CountingSocket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"no address for {host}")
