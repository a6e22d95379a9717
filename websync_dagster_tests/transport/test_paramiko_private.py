"""The one private paramiko API websync uses (its table of compression methods), checked on the installed
paramiko: an upgrade that changes it fails here rather than silently in a sync."""

from __future__ import annotations

import os
import zlib

import paramiko
import pytest
from paramiko.compress import ZlibCompressor, ZlibDecompressor

from websync_dagster.transport.ssh_wire import ZLIB_METHODS, FastTransport, transport_class

CSV_LIKE = b"".join(b"page %d: texte juridique, fasl %d\n" % (i, i % 97) for i in range(20000)) + os.urandom(4096)


def test_paramiko_still_has_the_compression_table_websync_replaces():
    stock = paramiko.Transport._compression_info
    for name in ZLIB_METHODS:
        assert stock[name] == (ZlibCompressor, ZlibDecompressor)
    assert "none" in stock


@pytest.mark.parametrize("level", [0, 1, 4, 6, 9])
def test_the_fenced_table_compresses_at_the_level_and_keeps_the_other_methods(level):
    cls = transport_class(level)
    assert issubclass(cls, FastTransport)
    table = cls._compression_info
    assert set(table) == set(paramiko.Transport._compression_info)
    assert table["none"] == paramiko.Transport._compression_info["none"]
    for name in ZLIB_METHODS:
        compressor, decompressor = table[name][0](), table[name][1]()
        expected = zlib.compressobj(level)
        ours = compressor(CSV_LIKE)
        assert ours == expected.compress(CSV_LIKE) + expected.flush(zlib.Z_SYNC_FLUSH)
        assert decompressor(ours) == CSV_LIKE


def test_packets_share_one_history_and_paramikos_inflate_reads_them_one_by_one():
    """The second packet of the same text costs a few bytes (paramiko's own compressor sends it whole
    again), and paramiko's decompressor, as sshd's, reads each packet as it arrives."""
    compressor, decompressor = transport_class(6)._compression_info["zlib@openssh.com"]
    ours, inflate, stock = compressor(), decompressor(), ZlibCompressor()
    packet = CSV_LIKE[:30_000]
    first, second = ours(packet), ours(packet)
    assert len(second) < len(first) // 5
    stock_first = stock(packet)
    assert len(stock(packet)) >= len(stock_first) - 2  # paramiko's forgets: the same cost (but its header)
    assert inflate(first) == packet and inflate(second) == packet
