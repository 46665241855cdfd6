"""Worker processes of tests/python/test_history.py: `python history_worker.py COMMAND ARGS...`.

Writers commit and record (version, digest of the content they committed) in a file of their
own; readers open recent past versions with version= and check them; the collector runs
s3vfs_gc in a loop. Each prints one JSON object (its result) on stdout as its last line.
"""
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

import apsw

from s3vfs_util import connect, extended_code, integrity, load, stats

SQLITE_BUSY = 5


def emit(obj):
    print(json.dumps(obj), flush=True)


def digest(conn):
    """The content of table t, as a hash."""
    rows = conn.execute("SELECT id, writer, n, payload FROM t ORDER BY id").fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def read_records(record_dir):
    """Every (version -> digest) any writer recorded so far."""
    records = {}
    for path in Path(record_dir).glob("writer-*.txt"):
        for line in path.read_text().splitlines():
            if line.strip():
                version, value = line.split()
                records[int(version)] = value
    return records


def cmd_writer(name, record_dir, me, rounds):
    """Commits `rounds` transactions (insert, and sometimes a large update or a delete), and
    records the version and digest of each commit. Conflicts are retried."""
    conn = connect(name)
    rng = random.Random(int(me))
    out = open(Path(record_dir) / f"writer-{me}.txt", "a")
    committed = conflicts = 0
    while committed < int(rounds):
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO t(writer, n, payload) VALUES(?, ?, randomblob(?))",
                (int(me), committed, rng.randrange(10, 3000)),
            )
            if rng.random() < 0.2:
                conn.execute("UPDATE t SET payload = randomblob(600) WHERE id % 7 = ?", (rng.randrange(7),))
            if rng.random() < 0.1:
                conn.execute("DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 2)")
            value = digest(conn)
            conn.execute("COMMIT")
        except apsw.Error as error:
            if extended_code(error) is None or extended_code(error) & 0xFF != SQLITE_BUSY:
                raise
            conflicts += 1
            if not conn.getautocommit():
                conn.execute("ROLLBACK")
            continue
        version = stats(conn)["version"]
        out.write(f"{version} {value}\n")
        out.flush()
        committed += 1
    emit({"committed": committed, "conflicts": conflicts})


def cmd_reader(name, record_dir, seconds, newest_of):
    """Until `seconds` pass: opens one of the `newest_of` newest versions with version=,
    checks it and records its digest."""
    live = connect(name)
    rng = random.Random(os.getpid())
    checked = []
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        versions = [row["version"] for row in json.loads(live.execute("SELECT s3vfs_versions()").fetchall()[0][0])]
        version = rng.choice(versions[-int(newest_of):])
        past = connect(name, version=version)
        result = integrity(past)
        checked.append({"version": version, "integrity": result, "digest": digest(past)})
        past.close()
    records = read_records(record_dir)
    emit({"checked": checked, "unknown": [c["version"] for c in checked if c["version"] not in records]})


def cmd_collector(name, keep, seconds):
    """Runs s3vfs_gc on the database (by URI, from a connection without it) in a loop."""
    conn = apsw.Connection(":memory:")
    target = f"file:{name}?bucket={os.environ['S3VFS_BUCKET']}"
    runs = removed = 0
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        report = json.loads(conn.execute("SELECT s3vfs_gc(?, ?)", (target, keep)).fetchall()[0][0])
        runs += 1
        removed += report["removed"]["total"]["objects"]
        time.sleep(0.2)
    emit({"runs": runs, "removed": removed})


COMMANDS = {"writer": cmd_writer, "reader": cmd_reader, "collector": cmd_collector}

if __name__ == "__main__":
    load()
    COMMANDS[sys.argv[1]](*sys.argv[2:])
