"""s3vfs_serialize and s3vfs_deserialize against the local S3 test server: byte-identical
round trips of random databases, one consistent version while another process commits,
atomic replacement seen from another process, and memory that does not grow with the size.
"""
import hashlib
import json
import os
import random
import re
import subprocess

import apsw
import pytest

from s3vfs_util import LIB, connect, finish_worker, integrity, load, run_worker, start_worker, unique_name


def bucket_uri(name, **params):
    query = "&".join(f"{key}={value}" for key, value in {"bucket": os.environ["S3VFS_BUCKET"], **params}.items())
    return f"file:{name}?{query}"


def functions():
    """A connection that only runs the SQL functions (they reach every connection after load)."""
    load()
    return apsw.Connection(":memory:")


def scalar(conn, sql, *args):
    return conn.execute(sql, args).fetchall()[0][0]


def build_random_database(path, page_size, seed):
    """A local database with a rowid table, a WITHOUT ROWID table, indexes, FTS5, blobs of
    every size up to several pages, and free pages left by DELETE."""
    rng = random.Random(seed)
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA page_size = {page_size}")
    conn.execute("PRAGMA auto_vacuum = NONE")
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE docs(id INTEGER PRIMARY KEY, title TEXT, body TEXT, data BLOB)")
    conn.execute("CREATE INDEX docs_title ON docs(title)")
    conn.execute("CREATE TABLE tags(tag TEXT PRIMARY KEY, weight REAL) WITHOUT ROWID")
    conn.execute("CREATE VIRTUAL TABLE search USING fts5(title, body)")
    words = ["sqlite", "bucket", "object", "block", "commit", "version", "page", "cache", "journal"]
    for i in range(rng.randrange(150, 400)):
        title = " ".join(rng.choice(words) for _ in range(3)) + f" {i}"
        body = " ".join(rng.choice(words) for _ in range(rng.randrange(5, 80)))
        data = rng.randbytes(rng.choice([0, 10, 300, page_size // 2, page_size * 3]))
        conn.execute("INSERT INTO docs(title, body, data) VALUES(?, ?, ?)", (title, body, data))
        conn.execute("INSERT INTO search(rowid, title, body) VALUES(last_insert_rowid(), ?, ?)", (title, body))
    for i in range(200):
        conn.execute("INSERT OR REPLACE INTO tags VALUES(?, ?)", (f"tag-{rng.randrange(1000)}", rng.random()))
    conn.execute("COMMIT")
    conn.execute("DELETE FROM docs WHERE id % 3 = 0")
    conn.execute("DELETE FROM search WHERE rowid % 3 = 0")
    free = scalar(conn, "PRAGMA freelist_count")
    conn.close()
    return free


def content_digest(conn):
    digest = hashlib.sha256()
    for sql in ("SELECT id, title, body, data FROM docs ORDER BY id",
                "SELECT tag, weight FROM tags ORDER BY tag",
                "SELECT rowid FROM search WHERE search MATCH 'commit AND version' ORDER BY rowid"):
        for row in conn.execute(sql):
            digest.update(repr(row).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("page_size,block_size", [
    (512, 65536), (1024, 4096), (4096, 4096), (4096, 65536), (8192, 16384), (65536, 65536),
])
def test_round_trips_are_byte_identical(tmp_path, page_size, block_size):
    original = tmp_path / "original.db"
    free_pages = build_random_database(original, page_size, seed=page_size + block_size)
    assert free_pages > 0, "the DELETEs should leave free pages"
    vacuumed = tmp_path / "vacuumed.db"
    local = apsw.Connection(str(original))
    local.execute("VACUUM INTO ?", (str(vacuumed),))
    expected_digest = content_digest(local)
    local.close()

    conn = functions()
    for source in (vacuumed, original):
        name = unique_name(f"roundtrip-{page_size}-{block_size}")
        uri = bucket_uri(name, block_size=block_size)
        size = source.stat().st_size
        assert scalar(conn, "SELECT s3vfs_deserialize(?, ?)", uri, str(source)) == size
        out = tmp_path / "out.db"
        assert scalar(conn, "SELECT s3vfs_serialize(?, ?, 'replace')", uri, str(out)) == size
        assert out.read_bytes() == source.read_bytes(), f"{source.name}: file round trip differs"
        assert scalar(conn, "SELECT s3vfs_serialize(?)", uri) == source.read_bytes()

        db = connect(name)
        assert integrity(db) == ["ok"]
        assert scalar(db, "PRAGMA page_size") == page_size
        assert content_digest(db) == expected_digest
        db.close()


def test_a_blob_round_trip_through_a_second_process(tmp_path):
    source = tmp_path / "source.db"
    build_random_database(source, 4096, seed=7)
    conn = functions()
    name = unique_name("blob")
    assert scalar(conn, "SELECT s3vfs_deserialize(?, ?)", bucket_uri(name), source.read_bytes()) == source.stat().st_size
    # Another process opens it through the VFS and sees the same content.
    local = apsw.Connection(str(source))
    expected = content_digest(local)
    local.close()
    db = connect(name)
    assert content_digest(db) == expected
    out = tmp_path / "again.db"
    db.execute("SELECT s3vfs_serialize('main', ?)", (str(out),)).fetchall()
    assert out.read_bytes() == source.read_bytes()


def make_generations_table(name, rows):
    conn = connect(name, block_size=4096)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, gen INTEGER NOT NULL, pad BLOB)")
    with conn:
        conn.executemany("INSERT INTO t(id, gen, pad) VALUES(?, 0, randomblob(60))", [(i,) for i in range(rows)])
    conn.close()


def test_serialize_exports_one_version_while_another_process_commits(tmp_path):
    name = unique_name("consistent")
    rows = 3000
    make_generations_table(name, rows)
    stop = tmp_path / "stop"
    writer = start_worker("generations", name, stop)
    conn = functions()
    generations = []
    try:
        for i in range(40):
            out = tmp_path / f"export-{i}.db"
            conn.execute("SELECT s3vfs_serialize(?, ?)", (bucket_uri(name), str(out))).fetchall()
            export = apsw.Connection(str(out))
            assert integrity(export) == ["ok"]
            assert export.execute("SELECT count(*), count(DISTINCT gen) FROM t").fetchall() == [(rows, 1)], \
                f"export {i} mixes versions"
            generations.append(scalar(export, "SELECT gen FROM t LIMIT 1"))
            export.close()
            if len(set(generations)) >= 4:
                break
    finally:
        stop.touch()
        result = finish_worker(writer, timeout=120)
    assert result["commits"] > 0
    assert len(set(generations)) >= 2, f"the writer never committed between exports: {generations}"


def make_content(path, kind, rows, pad):
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE content(kind TEXT, pad BLOB)")
    with conn:
        conn.executemany("INSERT INTO content VALUES(?, randomblob(?))", [(kind, pad)] * rows)
    summary = [[kind, rows, rows * pad]]
    conn.close()
    return summary


def test_deserialize_replaces_atomically_for_a_reader_in_another_process(tmp_path):
    large, small = tmp_path / "large.db", tmp_path / "small.db"
    summaries = {
        "large": make_content(large, "large", 3000, 150),
        "small": make_content(small, "small", 20, 10),
    }
    name = unique_name("atomic")
    conn = functions()
    uri = bucket_uri(name, block_size=4096)
    conn.execute("SELECT s3vfs_deserialize(?, ?)", (uri, str(large))).fetchall()
    stop = tmp_path / "stop"
    reader = start_worker("observe", name, stop)
    try:
        for round_ in range(8):
            source = small if round_ % 2 == 0 else large
            conn.execute("SELECT s3vfs_deserialize(?, ?, 'replace')", (uri, str(source))).fetchall()
    finally:
        stop.touch()
        result = finish_worker(reader, timeout=120)
    allowed = {json.dumps(summary + [["ok"]]) for summary in summaries.values()}
    seen = result["seen"]
    assert set(seen) <= allowed, f"a reader saw a mix or a damaged database: {seen}"
    assert len(seen) == 2, f"the reader should have seen both contents: {seen}"
    # The last content is the large one, whole.
    db = connect(name)
    assert db.execute("SELECT kind, count(*) FROM content GROUP BY kind").fetchall() == [("large", 3000)]


def test_memory_stays_bounded_whatever_the_size(tmp_path):
    big = tmp_path / "big.db"
    make_content(big, "big", 12000, 4000)  # about 48 MB
    size = big.stat().st_size
    assert size > 45 * 2**20
    tiny = tmp_path / "tiny.db"
    make_content(tiny, "tiny", 10, 10)
    name, warm = unique_name("big"), unique_name("warm")
    # By design a transfer holds two 4 MiB windows of blocks, plus the S3 client's buffers for
    # the window in flight and a 1 MiB file buffer: about 17 MiB whatever the size. A copy
    # that grew with the database would need all of its 48 MB.
    limit_kib = 24 * 1024

    loaded = run_worker("transfer_memory", "deserialize", bucket_uri(name), big, bucket_uri(warm), tiny,
                        timeout=300)
    assert loaded["bytes"] == size
    growth = loaded["hwm_after_kib"] - loaded["hwm_before_kib"]
    assert growth < limit_kib, f"deserializing {size} bytes grew the peak RSS by {growth} KiB"

    out = tmp_path / "out.db"
    saved = run_worker("transfer_memory", "serialize", bucket_uri(name), out, bucket_uri(warm),
                       tmp_path / "warm-out.db", timeout=300)
    assert saved["bytes"] == size
    growth = saved["hwm_after_kib"] - saved["hwm_before_kib"]
    assert growth < limit_kib, f"serializing {size} bytes grew the peak RSS by {growth} KiB"
    assert out.read_bytes() == big.read_bytes()


def test_progress_on_stderr_when_asked_and_only_then(tmp_path):
    """S3VFS_PROGRESS=1 shows each transfer's bytes done of the total and the rate on stderr
    (a terminal shows it unasked); a pipe without it shows nothing; a bad value is refused."""
    source = tmp_path / "source.db"
    build_random_database(source, 4096, seed=5)
    name = unique_name("progress")
    copy_name = unique_name("progress-copy")
    bucket = os.environ["S3VFS_BUCKET"]
    lib = os.path.splitext(LIB)[0]
    script = "\n".join([
        f".load {lib}",
        f"SELECT s3vfs_deserialize('file:{name}?bucket={bucket}', '{source}', 'replace');",
        f"SELECT s3vfs_serialize('file:{name}?bucket={bucket}', '{tmp_path / 'out.db'}', 'replace');",
        f"SELECT s3vfs_copy('file:{name}?bucket={bucket}', 'file:{copy_name}?bucket={bucket}', 'replace');",
        f"SELECT json_extract(s3vfs_gc('file:{name}?bucket={bucket}', 1), '$.retained_versions');",
    ]) + "\n"

    def cli(**env):
        return subprocess.run([os.environ.get("SQLITE3", "sqlite3"), ":memory:"], input=script, text=True,
                              capture_output=True, timeout=120, env={**os.environ, **env})

    shown = cli(S3VFS_PROGRESS="1")
    assert shown.returncode == 0, shown.stderr
    size_mb = f"{source.stat().st_size / 1e6:.1f}"
    for label in (f"deserialize {source} into s3://{bucket}/{name}", f"serialize s3://{bucket}/{name}",
                  f"copy s3://{bucket}/{name} to s3://{bucket}/{copy_name}"):
        line = re.search(re.escape(f"s3vfs: {label}: ") + r"([\d.]+) of ([\d.]+) MB, [\d.]+ MB/s done", shown.stderr)
        assert line and line.group(1) == line.group(2) == size_mb, (label, shown.stderr)
    assert re.search(r"s3vfs: gc s3://\S+: \d+ objects, \d+/s done", shown.stderr), shown.stderr
    quiet = cli(S3VFS_PROGRESS="")
    assert quiet.returncode == 0 and "MB/s" not in quiet.stderr and "done" not in quiet.stderr, quiet.stderr
    refused = cli(S3VFS_PROGRESS="yes")
    assert "S3VFS_PROGRESS=\"yes\" is not a setting" in refused.stdout + refused.stderr, refused
