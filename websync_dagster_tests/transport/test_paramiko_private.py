"""The one private paramiko API websync uses (the zlib level of SSH compression), checked on the installed
paramiko: an upgrade that changes it fails here rather than silently in a sync."""

from __future__ import annotations

import os
import zlib

import paramiko
from paramiko.compress import ZlibCompressor, ZlibDecompressor

from websync_dagster.transport.ssh import SSH_ZLIB_LEVEL, FastTransport, compression_table


def test_paramiko_still_has_the_compression_table_websync_replaces():
    stock = paramiko.Transport._compression_info
    assert stock["zlib@openssh.com"] == (ZlibCompressor, ZlibDecompressor)
    assert stock["zlib"] == (ZlibCompressor, ZlibDecompressor)
    assert hasattr(ZlibCompressor(), "z")  # the attribute websync sets to its own compressobj


def test_the_fenced_table_compresses_at_websyncs_level_and_keeps_the_other_methods():
    table = compression_table()
    assert set(table) == set(paramiko.Transport._compression_info)
    assert FastTransport._compression_info.keys() == table.keys()
    compressor_class, decompressor_class = table["zlib@openssh.com"]
    data = b"".join(b"page %d: texte juridique, fasl %d\n" % (i, i % 97) for i in range(20000)) + os.urandom(4096)
    ours = compressor_class()(data)
    expected = zlib.compressobj(SSH_ZLIB_LEVEL)
    assert ours == expected.compress(data) + expected.flush(zlib.Z_FULL_FLUSH)
    assert ours != ZlibCompressor()(data)  # not paramiko's level 6
    assert decompressor_class()(ours) == data
