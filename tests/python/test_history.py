"""History under concurrency, through real processes against the local S3 test server:
writers, readers of past versions and the collector at once; afterwards every retained
version passes integrity_check and holds exactly what its writer committed."""
import json
import subprocess
import sys
import time
from pathlib import Path

import apsw

from s3vfs_util import connect, finish_worker, integrity, worker_env

WORKER = str(Path(__file__).resolve().parent / "history_worker.py")


def start(command, *args):
    return subprocess.Popen(
        [sys.executable, WORKER, command, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_env(),
    )


def digest(conn):
    import hashlib

    rows = conn.execute("SELECT id, writer, n, payload FROM t ORDER BY id").fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def records(record_dir):
    found = {}
    for path in Path(record_dir).glob("writer-*.txt"):
        for line in path.read_text().splitlines():
            version, value = line.split()
            assert int(version) not in found, f"two writers recorded version {version}"
            found[int(version)] = value
    return found


def test_writers_readers_and_the_collector_at_once(tmp_path):
    from s3vfs_util import unique_name

    name = unique_name("history")
    # A 3 s safety margin, recorded in the database, so that the collector has work to do
    # within the test; block_size=4096 makes commits touch several block objects.
    setup = connect(name, gc_margin="3s", block_size=4096)
    setup.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, writer INTEGER, n INTEGER, payload BLOB)")
    (tmp_path / "writer-setup.txt").write_text(f"1 {digest(setup)}\n")
    setup.close()

    keep = 30
    writers = [start("writer", name, tmp_path, me, 120) for me in range(2)]
    readers = [start("reader", name, tmp_path, 20, 8) for _ in range(2)]
    collector = start("collector", name, keep, 25)
    written = [finish_worker(proc, 240) for proc in writers]
    read = [finish_worker(proc, 240) for proc in readers]
    collected = finish_worker(collector, 240)
    recorded = records(tmp_path)

    assert sum(w["committed"] for w in written) == 240
    assert collected["runs"] >= 5 and collected["removed"] > 0, collected
    # Readers of past versions never met a missing block, and saw what was committed.
    checked = [c for r in read for c in r["checked"]]
    assert len(checked) >= 10, read
    for c in checked:
        assert c["integrity"] == ["ok"], c
        assert c["digest"] == recorded[c["version"]], f"version {c['version']} differs"

    # Once more, with nothing running: every retained version is whole and as committed.
    conn = apsw.Connection(":memory:")
    target = f"file:{name}?bucket={__import__('os').environ['S3VFS_BUCKET']}"
    time.sleep(4.5)
    final = json.loads(conn.execute("SELECT s3vfs_gc(?, ?)", (target, keep)).fetchall()[0][0])
    versions = [row["version"] for row in json.loads(conn.execute("SELECT s3vfs_versions(?)", (target,)).fetchall()[0][0])]
    newest = max(recorded)
    # The last `keep` versions, and the versions back to the oldest record whose pages a
    # retained block still needs (never further back than the last checkpoint: 100 versions).
    oldest = newest - keep + 1
    assert versions == list(range(versions[0], newest + 1)), (versions, final)
    assert oldest - 100 < versions[0] <= oldest, (versions, final)
    for version in versions:
        past = connect(name, version=version)
        assert integrity(past) == ["ok"], version
        assert digest(past) == recorded[version], f"version {version} differs from its commit"
        past.close()
