"""The s3vfs extension loaded into Python's standard sqlite3 module, against the local S3 test
server: this process writes a database, a new process reads it back.

    /usr/bin/python3 tests/python-sqlite3/round_trip.py      # or `make test-bindings`

It needs an interpreter whose sqlite3 module can load extensions (Debian's /usr/bin/python3
can; many others are built without it), the built extension (S3VFS_LIB, else
target/debug/libs3vfs) and the S3 server's environment: eval "$(scripts/s3-server.sh env)".
Run as `round_trip.py read URI`, it prints what the database at URI holds as JSON.
"""
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIB = os.environ.get("S3VFS_LIB") or str(REPO / "target" / "debug" / "libs3vfs")


def load_s3vfs():
    """The README's example: loading once registers the VFS for the whole process."""
    loader = sqlite3.connect(":memory:")
    loader.enable_load_extension(True)
    loader.load_extension(LIB)
    loader.close()


def contents(conn):
    names = [name for (name,) in conn.execute("SELECT name FROM product ORDER BY id")]
    (stats,) = conn.execute("SELECT s3vfs_stats()").fetchone()
    return {"names": names, "version": json.loads(stats)["version"]}


def read(uri):
    load_s3vfs()
    conn = sqlite3.connect(uri, uri=True)
    print(json.dumps(contents(conn)))
    conn.close()


def write_then_read_in_a_new_process():
    name = f"bindings/python-sqlite3-{os.getpid()}-{time.time_ns()}.db"
    query = urllib.parse.urlencode({"vfs": "s3vfs", "bucket": os.environ["S3VFS_BUCKET"]})
    uri = f"file:{name}?{query}"

    load_s3vfs()
    conn = sqlite3.connect(uri, uri=True)
    conn.execute("CREATE TABLE IF NOT EXISTS product(id INTEGER PRIMARY KEY, name TEXT)")
    written = ["tea", "coffee", "ünïcødé ✓"]
    with conn:
        conn.executemany("INSERT INTO product(name) VALUES (?)", [(n,) for n in written])
    here = contents(conn)
    conn.close()
    assert here["names"] == written, here
    assert here["version"] >= 2, f"two transactions committed, yet {here}"

    reader = subprocess.run(
        [sys.executable, __file__, "read", uri], capture_output=True, text=True, timeout=60
    )
    assert reader.returncode == 0, f"reader exited {reader.returncode}: {reader.stderr}"
    there = json.loads(reader.stdout)
    assert there == here, f"a new process read {there}, the writer {here}"


def main():
    if sys.argv[1:2] == ["read"]:
        read(sys.argv[2])
        return
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        sys.exit(f"{sys.executable}: this interpreter's sqlite3 module cannot load extensions")
    missing = [v for v in ("AWS_ENDPOINT_URL", "S3VFS_BUCKET") if not os.environ.get(v)]
    if missing:
        sys.exit(f"set {', '.join(missing)}: eval \"$(scripts/s3-server.sh env)\"")
    try:
        write_then_read_in_a_new_process()
    except Exception:
        print("sqlite3: 0 passed, 1 failed")
        raise
    print("sqlite3: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
