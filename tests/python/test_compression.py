"""compression=zstd against the local S3 server: a database created with it stores every
object compressed (storage format 3) and reads back the same from any process, without the
parameter; the choice is fixed at creation; s3vfs_copy moves a database between codecs; a byte
changed at rest is SQLITE_IOERR_DATA naming the object."""
import os

import apsw
import pytest

from s3vfs_util import (connect, extended_code, integrity, run_worker, s3, stats, stored,
                        text_table, unique_name, uri)
from s3vfs_worker import table_digest

SQLITE_IOERR_DATA = 10 | (32 << 8)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def build(name, **params):
    """Table t of text rows (as compressible as real data), written in 130 transactions so
    that there are records carrying pages and a checkpoint after the first."""
    return text_table(name, 130,
                      lambda key: f"order {key} for customer {key % 97}: {'widget ' * (key % 9)}",
                      **params)


def test_a_compressed_database_stores_zstd_and_reads_back_anywhere():
    name = unique_name("zstd")
    expected = first = build(name, compression="zstd")
    objects = stored(name)
    blocks = {key: body for key, body in objects.items() if "/blocks/" in key}
    records = {key: body for key, body in objects.items() if "/log/" in key}
    checkpoints = {key: body for key, body in objects.items() if "/checkpoints/" in key}
    assert blocks and records and len(checkpoints) >= 2, sorted(objects)
    assert all(body.startswith(ZSTD_MAGIC) for body in blocks.values())
    for body in list(records.values()) + list(checkpoints.values()):
        assert body.startswith(b'{"format":3,"codec":"zstd:3"}\n'), body[:60]

    # Another process, without the parameter, reads it as it was written.
    reader = run_worker("scan", name, "")
    assert reader["digest"] == expected and reader["integrity"] == ["ok"], reader
    conn = connect(name)
    assert stats(conn)["database"]["compression"] == "zstd:3"
    version = stats(conn)["database"]["version"]
    with conn:
        conn.execute("UPDATE t SET val = val || '!' WHERE id % 50 = 0")
    expected = table_digest(conn, "t", "val")
    assert run_worker("scan", name, "")["digest"] == expected
    # History works the same: a past version reads back, and restoring it commits its blocks
    # compressed.
    past = connect(name, version=str(version))
    assert table_digest(past, "t", "val") == first
    past.close()
    conn.execute("SELECT s3vfs_restore('main', ?)", (version,)).fetchall()
    assert table_digest(conn, "t", "val") == first
    conn.close()
    assert run_worker("scan", name, "")["digest"] == first
    assert all(body.startswith(ZSTD_MAGIC)
               for key, body in stored(name).items() if "/blocks/" in key)

    # The same content uncompressed takes more than twice the room.
    plain = unique_name("zstd-plain")
    assert build(plain) == first
    raw_bytes = sum(len(body) for key, body in stored(plain).items() if "/blocks/" in key)
    zstd_bytes = sum(len(body) for key, body in stored(name).items() if "/blocks/" in key)
    assert zstd_bytes * 2 < raw_bytes, (zstd_bytes, raw_bytes)


def test_compression_is_fixed_when_the_database_is_created():
    name = unique_name("zstd-fixed")
    build(name, compression="zstd:7")
    for other in ("none", "zstd", "zstd:3"):
        with pytest.raises(apsw.Error) as raised:
            connect(name, compression=other).execute("SELECT count(*) FROM t").fetchall()
        message = str(raised.value)
        probe = apsw.Connection(":memory:")
        message += probe.execute("SELECT s3vfs_last_error()").fetchall()[0][0]
        assert "compression=zstd:7" in message and "fixed when a database is created" in message
    conn = connect(name, compression="zstd:7")
    assert stats(conn)["database"]["compression"] == "zstd:7"
    conn.close()
    plain = unique_name("plain-fixed")
    build(plain)
    with pytest.raises(apsw.Error):
        connect(plain, compression="zstd").execute("SELECT count(*) FROM t").fetchall()


def test_copy_moves_a_database_between_codecs_and_serialize_writes_plain_sqlite(tmp_path):
    plain = unique_name("codec-src")
    expected = build(plain)
    compressed, back = unique_name("codec-zstd"), unique_name("codec-back")
    conn = apsw.Connection(":memory:")
    conn.execute("SELECT s3vfs_copy(?, ?)",
                 (uri(plain), uri(compressed, compression="zstd:1"))).fetchall()
    conn.execute("SELECT s3vfs_copy(?, ?)", (uri(compressed), uri(back))).fetchall()
    out = tmp_path / "out.db"
    conn.execute("SELECT s3vfs_serialize(?, ?)", (uri(compressed), str(out))).fetchall()
    assert out.read_bytes().startswith(b"SQLite format 3\0")
    local = apsw.Connection(str(out))
    assert table_digest(local, "t", "val") == expected
    for name, codec in ((compressed, "zstd:1"), (back, "none")):
        reader = connect(name)
        assert table_digest(reader, "t", "val") == expected
        assert stats(reader)["database"]["compression"] == codec
        reader.close()
    assert all(body.startswith(ZSTD_MAGIC)
               for key, body in stored(compressed).items() if "/blocks/" in key)


def test_a_byte_changed_in_a_compressed_block_is_an_io_data_error():
    name = unique_name("zstd-rest")
    conn = connect(name, block_size="16k", compression="zstd")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, val TEXT NOT NULL)")
    with conn:
        conn.executemany("INSERT INTO t VALUES (?, ?)",
                         ((key, f"row {key} " * 20) for key in range(2000)))
    conn.close()
    # Every block after block 0 was written once, by that one transaction: the version reads
    # each of them.
    client, bucket = s3(), os.environ["S3VFS_BUCKET"]
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{name}/blocks/")["Contents"]
    key = max(item["Key"] for item in listed)
    assert "/blocks/0000000000/" not in key
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x01
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    with pytest.raises(apsw.Error) as raised:
        reader = connect(name, cache_size="1M")
        reader.execute("SELECT count(*), sum(length(val)) FROM t").fetchall()
        integrity(reader)
    assert extended_code(raised.value) == SQLITE_IOERR_DATA, raised.value
    probe = apsw.Connection(":memory:")
    assert key in probe.execute("SELECT s3vfs_last_error()").fetchall()[0][0]
