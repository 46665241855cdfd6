"""layout=sqlite-s3vfs against the real Python package sqlite-s3vfs (PyPI, with apsw and
boto3), both directions, on the local S3 server, for page_size:block_size 4096:4096,
1024:4096 and 65536:65536; and crash recovery across the two.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

import apsw

from layout_util import (
    SIZES,
    bucket,
    check,
    keys,
    package_connect,
    rows,
    s3vfs_connect,
    value,
)
from s3vfs_util import HERE, connect, integrity, stats, unique_name, worker_env

SIZE_IDS = [f"{page}:{block}" for page, block in SIZES]


def create(conn, page_size, count=300):
    conn.execute(f"PRAGMA page_size={page_size}")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    expected = {i: value(i) for i in range(1, count + 1)}
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t(id, v) VALUES(?, ?)", expected.items())
    conn.execute("COMMIT")
    return expected


@pytest.mark.parametrize("page_size,block_size", SIZES, ids=SIZE_IDS)
def test_package_writes_s3vfs_reads(page_size, block_size):
    name = unique_name("pkg-to-s3vfs")
    conn = package_connect(name, block_size)
    expected = create(conn, page_size)
    conn.execute("UPDATE t SET v = ? WHERE id % 7 = 0", (b"seven",))
    conn.execute("DELETE FROM t WHERE id % 11 = 0")
    expected = {k: (b"seven" if k % 7 == 0 else v) for k, v in expected.items() if k % 11}
    conn.close()
    assert keys(name + "/")[0] == f"{name}/0000000000"

    reader = s3vfs_connect(name, block_size)
    assert reader.execute("PRAGMA page_size").fetchone()[0] == page_size
    check(reader, expected)
    database = stats(reader)["database"]
    assert database["layout"] == "sqlite-s3vfs"
    assert database["requests"]["get"] > 0 and database["requests"]["list"] > 0
    assert database["size"] == sum(obj.size for obj in bucket().objects.filter(Prefix=name + "/"))


@pytest.mark.parametrize("page_size,block_size", SIZES, ids=SIZE_IDS)
def test_s3vfs_writes_package_reads(page_size, block_size):
    name = unique_name("s3vfs-to-pkg")
    conn = s3vfs_connect(name, block_size)
    expected = create(conn, page_size)
    conn.execute("UPDATE t SET v = ? WHERE id % 5 = 0", (b"five",))
    conn.execute("DELETE FROM t WHERE id % 3 = 0")
    expected = {k: (b"five" if k % 5 == 0 else v) for k, v in expected.items() if k % 3}
    # A rolled-back transaction, large enough to spill SQLite's page cache to the file.
    conn.execute("PRAGMA cache_size=10")
    conn.execute("BEGIN")
    conn.execute("DELETE FROM t WHERE id < 200")
    conn.execute("INSERT INTO t(id, v) SELECT id + 5000, randomblob(3000) FROM t")
    conn.execute("ROLLBACK")
    check(conn, expected)
    # A large transaction, then VACUUM, which shrinks the file.
    big = {i: value(i, 20_000) for i in range(10_000, 10_100)}
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t(id, v) VALUES(?, ?)", big.items())
    conn.execute("COMMIT")
    expected.update(big)
    conn.execute("DELETE FROM t WHERE id >= 10050")
    expected = {k: v for k, v in expected.items() if k < 10050}
    size_before = conn.execute("PRAGMA page_count").fetchone()[0] * page_size
    conn.execute("VACUUM")
    size_after = conn.execute("PRAGMA page_count").fetchone()[0] * page_size
    assert size_after < size_before
    check(conn, expected)
    assert stats(conn)["database"]["size"] == size_after
    conn.close()
    assert keys(name + "-journal/") == [], "the journal is deleted after each commit"
    blocks = keys(name + "/")
    assert len(blocks) == -(-size_after // block_size), "objects past the end were deleted"

    reader = package_connect(name, block_size)
    assert reader.execute("PRAGMA page_size").fetchone()[0] == page_size
    check(reader, expected)


@pytest.mark.parametrize("page_size,block_size", SIZES, ids=SIZE_IDS)
def test_alternating_writers(page_size, block_size):
    name = unique_name("alternate")
    conn = package_connect(name, block_size)
    expected = create(conn, page_size, count=50)
    conn.close()
    for round_number in range(3):
        for side in ("s3vfs", "package"):
            conn = s3vfs_connect(name, block_size) if side == "s3vfs" else package_connect(name, block_size)
            check(conn, expected)
            seed = round_number * 1000 + (side == "s3vfs")
            new = {100_000 + seed * 10 + i: value(seed * 10 + i) for i in range(10)}
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO t(id, v) VALUES(?, ?)", new.items())
            conn.execute("DELETE FROM t WHERE id = (SELECT min(id) FROM t)")
            conn.execute("COMMIT")
            expected.pop(min(expected))
            expected.update(new)
            check(conn, expected)
            conn.close()


def test_a_wrong_block_size_is_refused_with_a_reason():
    name = unique_name("wrong-block")
    conn = package_connect(name, 4096)
    create(conn, 4096, count=100)
    conn.close()
    with pytest.raises(apsw.CantOpenError):
        s3vfs_connect(name, 8192)
    last = apsw.Connection(":memory:").execute("SELECT s3vfs_last_error()").fetchone()[0]
    assert "block_size=8192 contradicts" in last, last
    assert "cannot be detected" in last, last


def crash(writer, name, block_size):
    proc = subprocess.run(
        [sys.executable, str(HERE / "layout_worker.py"), "crash", writer, name, str(block_size)],
        capture_output=True, text=True, env=worker_env(), timeout=300,
    )
    detail = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == -signal.SIGKILL, f"the {writer} writer was not killed mid-commit; {detail}"
    assert json.loads(proc.stdout.splitlines()[0])["blocks_before"] > 0, detail


def test_the_local_server_like_s3_stores_nothing_of_a_put_cut_off_mid_body():
    """What the crash test below relies on: a writer killed while sending a block leaves
    the old object, never a torn one (S3 answers IncompleteBody; moto alone would store the
    bytes that arrived, which the test server refuses)."""
    import socket
    import urllib.parse

    import boto3

    endpoint = urllib.parse.urlsplit(os.environ["AWS_ENDPOINT_URL"])
    bucket_name = os.environ["S3VFS_BUCKET"]
    key = unique_name("torn")
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    client.put_object(Bucket=bucket_name, Key=key, Body=b"old" * 100)
    with socket.create_connection((endpoint.hostname, endpoint.port), timeout=10) as raw:
        raw.sendall(f"PUT /{bucket_name}/{key} HTTP/1.1\r\nHost: {endpoint.netloc}\r\n"
                    "Content-Length: 300\r\n\r\n".encode() + b"new" * 10)
        raw.shutdown(socket.SHUT_WR)
        reply = b""
        while b"IncompleteBody" not in reply:
            chunk = raw.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert b"IncompleteBody" in reply, reply
    assert client.get_object(Bucket=bucket_name, Key=key)["Body"].read() == b"old" * 100


@pytest.mark.parametrize("writer,recoverer", [("s3vfs", "package"), ("package", "s3vfs")])
def test_a_writer_killed_mid_commit_is_rolled_back_by_the_other(writer, recoverer):
    name = unique_name(f"crash-{writer}")
    page_size = block_size = 4096
    conn = package_connect(name, block_size)
    expected = create(conn, page_size, count=400)
    conn.close()
    before = set(keys(name + "/"))

    crash(writer, name, block_size)
    assert keys(name + "-journal/"), "the killed writer left its journal"
    assert set(keys(name + "/")) >= before

    conn = package_connect(name, block_size) if recoverer == "package" else s3vfs_connect(name, block_size)
    # The first read finds the hot journal and rolls the torn commit back.
    check(conn, expected)
    conn.close()
    assert keys(name + "-journal/") == [], "the hot journal was played back and deleted"
    other = s3vfs_connect(name, block_size) if recoverer == "package" else package_connect(name, block_size)
    check(other, expected)


def test_journal_modes_without_a_stored_journal_keep_the_mode_in_force():
    """MEMORY, OFF and WAL would leave no journal in the bucket: they answer with the mode in
    force, as SQLite answers a mode it cannot use; synchronous=OFF keeps the level in force."""
    name = unique_name("journal-mode")
    conn = s3vfs_connect(name, 4096)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    for kept in ("delete", "truncate"):
        assert conn.execute(f"PRAGMA journal_mode={kept}").fetchone()[0] == kept
        for mode in ("MEMORY", "OFF", "WAL", "m"):
            assert conn.execute(f"PRAGMA journal_mode={mode}").fetchall() == [(kept,)]
            assert "is not available" in conn.execute("SELECT s3vfs_last_error()").fetchone()[0]
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == kept
    level = conn.execute("PRAGMA synchronous").fetchone()[0]
    assert conn.execute("PRAGMA synchronous=OFF").fetchall() == []
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == level != 0
    assert "synchronous=OFF" in conn.execute("SELECT s3vfs_last_error()").fetchone()[0]
    conn.execute("PRAGMA synchronous=NORMAL")
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    for mode in ("truncate", "persist", "delete"):
        assert conn.execute(f"PRAGMA journal_mode={mode}").fetchone()[0] == mode
        conn.execute("INSERT INTO t(v) VALUES(?)", (mode,))
        assert integrity(conn) == ["ok"]
    assert [r[0] for r in conn.execute("SELECT v FROM t")] == ["truncate", "persist", "delete"]


def bucket_uri(name, **params):
    query = "&".join(f"{key}={value}" for key, value in {"bucket": os.environ["S3VFS_BUCKET"], **params}.items())
    return f"file:{name}?{query}"


@pytest.mark.parametrize("page_size,block_size", SIZES, ids=SIZE_IDS)
def test_migration_to_the_versioned_layout_and_back_out(page_size, block_size):
    # The package writes a database; s3vfs_copy makes it a versioned one, byte for byte.
    python_name = unique_name("migrate-from")
    conn = package_connect(python_name, block_size)
    expected = create(conn, page_size, count=120)
    conn.close()
    native_name = unique_name("migrate-native")
    functions = connect(unique_name("migrate-functions"))
    legacy = bucket_uri(python_name, layout="sqlite-s3vfs", block_size=block_size)
    size = functions.execute("SELECT s3vfs_copy(?, ?)", (legacy, bucket_uri(native_name))).fetchone()[0]
    assert size == sum(obj.size for obj in bucket().objects.filter(Prefix=python_name + "/"))
    assert functions.execute("SELECT s3vfs_serialize(?) = s3vfs_serialize(?)",
                             (legacy, bucket_uri(native_name))).fetchone()[0] == 1

    # The versioned database is a normal s3vfs database now, in storage format 2: history,
    # atomic commits, checksummed records.
    native = connect(native_name)
    check(native, expected)
    native.execute("DELETE FROM t WHERE id > 60")
    expected = {k: v for k, v in expected.items() if k <= 60}
    assert stats(native)["version"] == 2
    for version in (1, 2):
        record = bucket().Object(f"{native_name}/log/{version:020}").get()["Body"].read()
        header = json.loads(record.split(b"\n", 1)[0])
        assert header["format"] == 2 and header["version"] == version, header

    # ... and back out to a new name the package reads, after a VACUUM.
    native.execute("VACUUM")
    out_name = unique_name("migrate-out")
    native.execute("SELECT s3vfs_copy('main', ?)",
                   (bucket_uri(out_name, layout="sqlite-s3vfs", block_size=block_size),)).fetchall()
    native.close()
    reader = package_connect(out_name, block_size)
    assert reader.execute("PRAGMA page_size").fetchone()[0] == page_size
    check(reader, expected)
