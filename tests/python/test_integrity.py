"""Checksums of storage format 2 against the local S3 server: a byte changed in transit is
fetched again and never reaches SQLite; a byte changed at rest is SQLITE_IOERR_DATA naming
the object, and changes nothing."""
import hashlib
import os
import json

import apsw
import boto3
import pytest

from s3vfs_util import connect, extended_code, integrity, other_endpoint, proxy_call, unique_name

SQLITE_IOERR_DATA = 10 | (32 << 8)
ROWS = 600


def digest(conn):
    rows = conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def build(name):
    """A database of 4 KiB blocks written in 30 transactions, so that most blocks are an
    object patched by a commit record. Returns its digest."""
    conn = connect(name, block_size=4096)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    for batch in range(30):
        with conn:
            for row in range(ROWS // 30):
                conn.execute("INSERT INTO t(v) VALUES (?)", (os.urandom(200 + (batch * 7 + row) % 300),))
    expected = digest(conn)
    conn.close()
    return expected


def test_bytes_changed_in_transit_are_fetched_again_and_never_reach_sqlite(proxy):
    name = unique_name("flips")
    expected = build(name)
    proxy_call(proxy, "/__config?flip_percent=15", "POST")
    # A small cache, so that reading everything three times fetches objects again and again.
    conn = connect(name, endpoint=proxy, cache_size=16 * 4096)
    for _ in range(3):
        assert digest(conn) == expected
        assert integrity(conn) == ["ok"]
    stats = proxy_call(proxy, "/__stats")
    assert stats["flipped"] >= 3 and stats["requests"]["get"] >= 50, stats
    conn.close()


def test_a_byte_changed_at_rest_is_an_io_data_error_naming_the_object():
    name = unique_name("at-rest")
    expected = build(name)
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    bucket = os.environ["S3VFS_BUCKET"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{name}/blocks/0000000000/")["Contents"]
    key = max(listed, key=lambda item: item["LastModified"])["Key"]
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))

    with pytest.raises(apsw.Error) as raised:
        conn = connect(name, endpoint=other_endpoint())
        conn.execute("SELECT count(*) FROM t").fetchall()
    assert extended_code(raised.value) == SQLITE_IOERR_DATA, raised.value
    probe = apsw.Connection(":memory:")
    message = probe.execute("SELECT s3vfs_last_error()").fetchall()[0][0]
    assert key in message and "checksum mismatch" in message, message

    # Restoring the byte restores the database: nothing else was touched.
    body[len(body) // 2] ^= 0x01
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    conn = connect(name, endpoint=other_endpoint(), cache_size="1M")
    assert digest(conn) == expected
    assert integrity(conn) == ["ok"]
    conn.close()


def test_get_and_list_bodies_cut_in_transit_are_fetched_again(proxy):
    name = unique_name("cuts")
    expected = build(name)
    proxy_call(proxy, "/__config?cut_percent=10", "POST")
    target = f"file:{name}?bucket={os.environ['S3VFS_BUCKET']}&endpoint={proxy}"
    probe = apsw.Connection(":memory:")
    for _ in range(10):
        # Each call lists the log.
        versions = json.loads(probe.execute("SELECT s3vfs_versions(?)", (target,)).fetchall()[0][0])
        assert [row["version"] for row in versions] == list(range(1, 32))
    conn = connect(name, endpoint=proxy, cache_size=16 * 4096)
    for _ in range(3):
        assert digest(conn) == expected
    assert integrity(conn) == ["ok"]
    stats = proxy_call(proxy, "/__stats")
    assert stats["cut"] >= 5 and stats["requests"]["list"] >= 10, stats
    conn.close()
