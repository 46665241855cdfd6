"""Client-side encryption against the local S3 server: with S3VFS_ENCRYPTION_KEY (or
S3VFS_KEY_FILE) set, a database is created encrypted and nothing of its content reaches the
bucket or the disk cache in plain; it opens only with its key, and a plain database only with
encryption=none; a changed or moved object is SQLITE_IOERR_DATA; bytes flipped in transit are
fetched again; s3vfs_copy re-encrypts and decrypts; no key appears in any message, log or
statistic."""
import hashlib
import json
import os
import subprocess
import sys
import time
import zlib

import apsw
import pytest

from s3vfs_util import (LIB, REPO, connect, extended_code, integrity, other_endpoint,
                        proxy_call, run_worker, s3, stats, stored, text_table, unique_name, uri,
                        worker_env)
from s3vfs_worker import table_digest

SQLITE_IOERR_DATA = 10 | (32 << 8)
SQLITE_CANTOPEN = 14
KEY = "3c1f5e7a9b2d4f6081a3c5e7092b4d6f8a1c3e5f7092b4d6f8a1c3e5f7092b4d"
NEW_KEY = "e4d3c2b1a0f9e8d7c6b5a49382716050e4d3c2b1a0f9e8d7c6b5a49382716050"


def fingerprint(key):
    """The fingerprint s3vfs shows of a key: SHA-256 of a label and the key, first 8 bytes."""
    return hashlib.sha256(b"s3vfs key fingerprint\n" + bytes.fromhex(key)).hexdigest()[:16]


ROW_TEXT = "confidential order"


def build(name, **params):
    """Table t of text rows, written in 110 transactions so that there are records carrying
    pages, checkpoints, interior-page indexes and the head hint."""
    return text_table(name, 110, lambda key: f"{ROW_TEXT} {key} " * 3, **params)


def last_error():
    return apsw.Connection(":memory:").execute("SELECT s3vfs_last_error()").fetchall()[0][0]


def open_error(name, **params):
    """The error opening and reading database `name` fails with, and s3vfs's message."""
    with pytest.raises(apsw.Error) as raised:
        conn = connect(name, endpoint=other_endpoint(), **params)
        conn.execute("SELECT count(*) FROM t").fetchall()
    return raised.value, str(raised.value) + " " + last_error()


def assert_sealed(objects, key):
    line = b'{"format":4,"cipher":"aes-256-gcm","key":"%s"}\n' % fingerprint(key).encode()
    assert objects
    for object_key, body in objects.items():
        assert body.startswith(line), (object_key, body[:80])
        for plain in (b"SQLite format 3", ROW_TEXT.encode(), b'"format":2', b'"format":3'):
            assert plain not in body, (object_key, plain)


def test_an_encrypted_database_stores_nothing_in_plain_and_reads_back_with_its_key(
        monkeypatch, tmp_path):
    monkeypatch.setenv("S3VFS_ENCRYPTION_KEY", KEY)
    name = unique_name("sealed")
    cache_dir = tmp_path / "cache"
    expected = build(name, compression="zstd", cache_dir=str(cache_dir), gc_margin="1s")
    objects = stored(name)
    kinds = {kind for kind in ("/blocks/", "/log/", "/checkpoints/", "/head") if
             any(kind in key for key in objects)}
    assert len(kinds) == 4 and any(key.endswith(".interior") for key in objects), sorted(objects)
    assert_sealed(objects, KEY)
    # The disk cache holds the blocks sealed too.
    files = [path for path in cache_dir.rglob("*") if path.is_file()]
    assert files
    for path in files:
        assert ROW_TEXT.encode() not in path.read_bytes() and b"SQLite" not in path.read_bytes()

    # Another process with the key reads it (from the disk cache, then the store).
    for params in (f"cache_dir={cache_dir}", ""):
        reader = run_worker("scan", name, params)
        assert reader["digest"] == expected and reader["integrity"] == ["ok"], reader
    conn = connect(name)
    database = stats(conn)["database"]
    assert database["encryption"] == "aes-256-gcm", database
    assert database["key_fingerprint"] == fingerprint(KEY)
    assert database["compression"] == "zstd:3"
    with conn:
        conn.execute("UPDATE t SET val = val || '!' WHERE id % 7 = 0")
    expected = table_digest(conn, "t", "val")
    version = database["version"]
    conn.close()
    assert run_worker("scan", name, "")["digest"] == expected
    # History and the collector read through the same keys.
    past = connect(name, version=str(version))
    assert integrity(past) == ["ok"]
    past.close()
    time.sleep(2.5)
    conn = apsw.Connection(":memory:")
    collected = json.loads(conn.execute("SELECT s3vfs_gc(?, '1')", (uri(name),)).fetchall()[0][0])
    assert collected["removed"]["records"]["objects"] > 0, collected
    assert run_worker("scan", name, "")["digest"] == expected
    assert_sealed(stored(name), KEY)


def test_the_wrong_key_or_none_fails_at_open_and_says_what_to_set(monkeypatch):
    monkeypatch.setenv("S3VFS_ENCRYPTION_KEY", KEY)
    name = unique_name("sealed-keys")
    build(name)
    monkeypatch.delenv("S3VFS_ENCRYPTION_KEY")
    error, message = open_error(name)
    assert extended_code(error) == SQLITE_CANTOPEN, error
    assert "is encrypted" in message and fingerprint(KEY) in message, message
    assert "S3VFS_ENCRYPTION_KEY" in message, message
    monkeypatch.setenv("S3VFS_ENCRYPTION_KEY", NEW_KEY)
    error, message = open_error(name)
    assert extended_code(error) == SQLITE_CANTOPEN, error
    assert fingerprint(KEY) in message and fingerprint(NEW_KEY) in message, message
    # With a key set, a plain database opens only with encryption=none.
    plain = unique_name("plain-with-key")
    monkeypatch.delenv("S3VFS_ENCRYPTION_KEY")
    expected = build(plain)
    monkeypatch.setenv("S3VFS_ENCRYPTION_KEY", KEY)
    error, message = open_error(plain)
    assert "is not encrypted" in message and "encryption=none" in message, message
    conn = connect(plain, encryption="none")
    assert table_digest(conn, "t", "val") == expected
    assert stats(conn)["database"]["encryption"] == "none"
    conn.close()
    # encryption=none does not open an encrypted database either.
    error, message = open_error(name, encryption="none")
    assert "is encrypted" in message, message
    for text in (message, last_error()):
        assert KEY not in text and NEW_KEY not in text and KEY[:16] not in text


def test_no_key_appears_in_logs_stats_debug_or_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("S3VFS_ENCRYPTION_KEY", KEY)
    name = unique_name("sealed-quiet")
    build(name)
    script = (
        "import apsw, sys\n"
        "conn = apsw.Connection(':memory:')\n"
        "conn.enable_load_extension(True)\n"
        f"conn.load_extension({LIB!r})\n"
        f"db = apsw.Connection({uri(name)!r}, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_URI)\n"
        "print(db.execute('SELECT count(*) FROM t').fetchall())\n"
        "print(db.execute('SELECT s3vfs_stats()').fetchall()[0][0])\n"
        "print(db.execute('SELECT s3vfs_debug()').fetchall()[0][0])\n"
        "print(db.execute('SELECT * FROM s3vfs_versions()').fetchall()[-1])\n"
    )
    keys = tmp_path / "keys"
    keys.write_text(f"{NEW_KEY[:40]}\n")
    outputs = []
    for env_change in ({}, {"S3VFS_ENCRYPTION_KEY": NEW_KEY}, {"S3VFS_ENCRYPTION_KEY": KEY[:63]},
                       {"S3VFS_ENCRYPTION_KEY": "", "S3VFS_KEY_FILE": str(keys)}):
        env = {**worker_env(), "S3VFS_LOG": "debug", **env_change}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=60, cwd=REPO)
        outputs.append(done.stdout + done.stderr)
    assert "[(2200,)]" in outputs[0] and '"key_fingerprint"' in outputs[0], outputs[0]
    assert all("s3vfs" in output for output in outputs)
    assert "is encrypted with the key of fingerprint" in outputs[1], outputs[1]
    assert "64 hex digits" in outputs[2] and "line 1 is not a key" in outputs[3], outputs[2:]
    for output in outputs:
        for secret in (KEY, NEW_KEY):
            for at in range(0, 64 - 12, 4):
                assert secret[at:at + 12] not in output.lower(), (secret[at:at + 12], output)


def test_a_changed_or_moved_object_is_an_io_data_error(monkeypatch):
    monkeypatch.setenv("S3VFS_ENCRYPTION_KEY", KEY)
    name = unique_name("sealed-rest")
    conn = connect(name, block_size="16k")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, val TEXT NOT NULL)")
    with conn:
        conn.executemany("INSERT INTO t VALUES (?, ?)", ((key, f"row {key} " * 20)
                                                          for key in range(2000)))
    expected = table_digest(conn, "t", "val")
    conn.close()
    client, bucket = s3(), os.environ["S3VFS_BUCKET"]
    listed = sorted(item["Key"] for item in
                    client.list_objects_v2(Bucket=bucket, Prefix=f"{name}/blocks/")["Contents"])
    # Every block was written by that one transaction, and the version reads each of them.
    target, donor = listed[-1], listed[-2]
    original = client.get_object(Bucket=bucket, Key=target)["Body"].read()
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0x01
    # The checksum fixed up, as someone who knows the format would: the seal still fails.
    changed[-4:] = (zlib.crc32(bytes(changed[:-4])) & 0xffffffff).to_bytes(4, "little")
    moved = client.get_object(Bucket=bucket, Key=donor)["Body"].read()
    for body, why in ((bytes(changed), "does not authenticate"), (moved, "does not authenticate")):
        client.put_object(Bucket=bucket, Key=target, Body=body)
        with pytest.raises(apsw.Error) as raised:
            reader = connect(name, endpoint=other_endpoint(), cache_size="1M")
            reader.execute("SELECT count(*), sum(length(val)) FROM t").fetchall()
            integrity(reader)
        assert extended_code(raised.value) == SQLITE_IOERR_DATA, raised.value
        message = last_error()
        assert target in message and why in message, message
    client.put_object(Bucket=bucket, Key=target, Body=original)
    assert run_worker("scan", name, "cache_size=1M")["digest"] == expected


def test_bytes_flipped_in_transit_are_fetched_again(monkeypatch, proxy):
    monkeypatch.setenv("S3VFS_ENCRYPTION_KEY", KEY)
    name = unique_name("sealed-flips")
    expected = build(name)
    proxy_call(proxy, "/__config?flip_percent=15", "POST")
    # A cache of three blocks, and a new connection (with an empty page cache) for each pass,
    # so that every pass fetches most objects again.
    for _ in range(8):
        conn = connect(name, endpoint=proxy, cache_size=3 * 16384)
        assert table_digest(conn, "t", "val") == expected
        assert integrity(conn) == ["ok"]
        conn.close()
    stats = proxy_call(proxy, "/__stats")
    assert stats["flipped"] >= 3 and stats["block_gets"] >= 60, stats


def test_copy_re_encrypts_and_decrypts_and_serialize_writes_plain_sqlite(monkeypatch, tmp_path):
    monkeypatch.setenv("S3VFS_ENCRYPTION_KEY", KEY)
    old = unique_name("rekey-old")
    expected = build(old)
    # Rotation: the file's first key seals new databases; the second still opens the old one.
    keys = tmp_path / "keys"
    keys.write_text(f"# new key first\n{NEW_KEY}\n{KEY}\n")
    monkeypatch.delenv("S3VFS_ENCRYPTION_KEY")
    monkeypatch.setenv("S3VFS_KEY_FILE", str(keys))
    new, plain = unique_name("rekey-new"), unique_name("rekey-plain")
    conn = apsw.Connection(":memory:")
    conn.execute("SELECT s3vfs_copy(?, ?)", (uri(old), uri(new))).fetchall()
    conn.execute("SELECT s3vfs_copy(?, ?)", (uri(new), uri(plain, encryption="none"))).fetchall()
    out = tmp_path / "out.db"
    conn.execute("SELECT s3vfs_serialize(?, ?)", (uri(new), str(out))).fetchall()
    assert out.read_bytes().startswith(b"SQLite format 3\0")
    assert table_digest(apsw.Connection(str(out)), "t", "val") == expected
    assert_sealed(stored(new), NEW_KEY)
    plain_objects = stored(plain)
    assert any(body.startswith(b"SQLite format 3\0") for body in plain_objects.values())
    # With the new key alone, the new copy opens and the old database does not.
    monkeypatch.delenv("S3VFS_KEY_FILE")
    monkeypatch.setenv("S3VFS_ENCRYPTION_KEY", NEW_KEY)
    reader = connect(new)
    assert table_digest(reader, "t", "val") == expected
    assert stats(reader)["database"]["key_fingerprint"] == fingerprint(NEW_KEY)
    reader.close()
    _, message = open_error(old)
    assert fingerprint(KEY) in message, message
    monkeypatch.delenv("S3VFS_ENCRYPTION_KEY")
    reader = connect(plain)
    assert table_digest(reader, "t", "val") == expected
    assert stats(reader)["database"]["encryption"] == "none"
    reader.close()
