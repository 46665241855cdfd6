"""Worker processes of the Python tests: `python s3vfs_worker.py COMMAND ARGS...`.

Each command prints one JSON object per line on stdout; the last one is its result. Anything
unexpected raises, so the process exits non-zero with a traceback on stderr.
"""
import hashlib
import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path

import apsw

from s3vfs_util import connect, extended_code, integrity, load, stats


def emit(obj):
    print(json.dumps(obj), flush=True)


def payload(seed, size):
    return random.Random(seed).randbytes(size)


def vm_hwm_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def wait_for_files(paths, timeout):
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier: {[str(p) for p in paths if not p.exists()]} never appeared")
        time.sleep(0.005)


def cmd_read(name):
    """Reads table t back and checks the database."""
    conn = connect(name)
    rows = conn.execute("SELECT id, val FROM t ORDER BY id").fetchall()
    emit({"rows": [list(row) for row in rows], "integrity": integrity(conn), "version": stats(conn)["version"]})


def cmd_insert(name, start, count):
    """Inserts rows start..start+count-1 into table t in one transaction."""
    conn = connect(name)
    start, count = int(start), int(count)
    conn.execute("BEGIN")
    for i in range(start, start + count):
        conn.execute("INSERT INTO t(id, val) VALUES(?, ?)", (i, f"from-b-{i}"))
    conn.execute("COMMIT")
    emit({"inserted": list(range(start, start + count)), "version": stats(conn)["version"]})


def cmd_conflict(name, barrier_dir, me, parties, journal_mode="delete", synchronous="full"):
    """One racer: read the counter in a write transaction, wait for the others, increment it
    and sign it; then report what its connection reads afterwards."""
    barrier = Path(barrier_dir)
    conn = connect(name)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    (seen,) = conn.execute("SELECT n FROM counter WHERE id = 1").fetchone()
    conn.execute("BEGIN IMMEDIATE")
    (seen,) = conn.execute("SELECT n FROM counter WHERE id = 1").fetchone()
    (barrier / f"ready-{me}").touch()
    wait_for_files([barrier / f"ready-{i}" for i in range(int(parties))], timeout=30)
    conn.execute("UPDATE counter SET n = n + 1, last = ? WHERE id = 1", (int(me),))
    result = {
        "me": int(me),
        "seen": seen,
        "pragmas": [
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
        ],
    }
    try:
        conn.execute("COMMIT")
        result.update(committed=True)
    except apsw.Error as error:
        result.update(
            committed=False,
            error=type(error).__name__,
            extended=extended_code(error),
            message=str(error),
            last_error=conn.execute("SELECT s3vfs_last_error()").fetchone()[0],
            in_transaction_after=conn.in_transaction,
        )
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    result["after"], result["last_after"] = conn.execute(
        "SELECT n, last FROM counter WHERE id = 1"
    ).fetchone()
    result["integrity"] = integrity(conn)
    emit(result)


def cmd_increment(name, me, count):
    """Increments the counter `count` times, retrying each whole transaction on BUSY, and logs
    every successful increment."""
    me, count = int(me), int(count)
    conn = connect(name)
    done = attempts = 0
    busy_codes = {}
    while done < count:
        attempts += 1
        if attempts > 50 * count:
            raise RuntimeError(f"gave up after {attempts} attempts, {done} increments done")
        try:
            conn.execute("BEGIN IMMEDIATE")
            (n,) = conn.execute("SELECT n FROM counter WHERE id = 1").fetchone()
            conn.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
            conn.execute("INSERT INTO log(worker, value) VALUES(?, ?)", (me, n + 1))
            conn.execute("COMMIT")
            done += 1
        except apsw.BusyError as error:
            code = str(extended_code(error))
            busy_codes[code] = busy_codes.get(code, 0) + 1
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            time.sleep(random.uniform(0, 0.03))
    emit({"me": me, "done": done, "attempts": attempts, "busy": busy_codes})


def cmd_batches(name):
    """Commits batches of 200 rows of ~500 random bytes forever, reporting each committed batch
    only after its COMMIT returned. The parent kills it."""
    conn = connect(name, block_size=4096)
    exists = conn.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'rows'").fetchone()[0]
    batch = conn.execute("SELECT coalesce(max(batch), 0) FROM rows").fetchone()[0] if exists else 0
    emit({"started_after": batch})
    while True:
        batch += 1
        conn.execute("BEGIN")
        # The first batch creates the table when it is missing (a database made elsewhere).
        conn.execute(
            "CREATE TABLE IF NOT EXISTS rows(batch INTEGER NOT NULL, i INTEGER NOT NULL, "
            "payload BLOB NOT NULL, PRIMARY KEY(batch, i))"
        )
        conn.execute(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 200) "
            "INSERT INTO rows(batch, i, payload) SELECT ?, i, randomblob(500) FROM s",
            (batch,),
        )
        conn.execute("COMMIT")
        emit({"committed": batch})


def cmd_fork(name):
    """Uses the database, forks, and has the child open its own connection, read and write."""
    conn = connect(name)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
    conn.execute("INSERT INTO t(who) VALUES('parent-before-fork')")
    before = [row[0] for row in conn.execute("SELECT who FROM t ORDER BY id")]
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            child = connect(name)
            seen = [row[0] for row in child.execute("SELECT who FROM t ORDER BY id")]
            assert seen == ["parent-before-fork"], f"child saw {seen}"
            child.execute("INSERT INTO t(who) VALUES('child')")
            seen = [row[0] for row in child.execute("SELECT who FROM t ORDER BY id")]
            assert seen == ["parent-before-fork", "child"], f"child saw after its insert {seen}"
            assert integrity(child) == ["ok"], integrity(child)
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(status)
    deadline = time.monotonic() + 30
    child_status = None
    while time.monotonic() < deadline:
        waited, status = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            child_status = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.02)
    if child_status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        child_status = "hung: killed after 30 s"
    after = [row[0] for row in conn.execute("SELECT who FROM t ORDER BY id")]
    conn.execute("INSERT INTO t(who) VALUES('parent-after-fork')")
    final = [row[0] for row in conn.execute("SELECT who FROM t ORDER BY id")]
    emit({"before": before, "child_status": child_status, "after": after, "final": final,
          "integrity": integrity(conn)})


BIG_ROWS = 2000
BIG_SIZE = 10_000


def table_digest(conn, table="big", column="payload"):
    digest = hashlib.sha256()
    for row_id, data in conn.execute(f"SELECT id, {column} FROM {table} ORDER BY id"):
        digest.update(row_id.to_bytes(8, "little"))
        digest.update(data.encode() if isinstance(data, str) else data)
    return digest.hexdigest()


def expected_digest(ids):
    digest = hashlib.sha256()
    for row_id in ids:
        digest.update(row_id.to_bytes(8, "little"))
        digest.update(payload(row_id, BIG_SIZE))
    return digest.hexdigest()


def summary(conn):
    count, id_sum, byte_sum = conn.execute(
        "SELECT count(*), coalesce(sum(id), 0), coalesce(sum(length(payload)), 0) FROM big"
    ).fetchone()
    return {"count": count, "id_sum": id_sum, "bytes": byte_sum}


def insert_big_rows(conn, ids):
    for row_id in ids:
        conn.execute("INSERT INTO big(id, payload) VALUES(?, ?)", (row_id, payload(row_id, BIG_SIZE)))


def requests(conn):
    return stats(conn)["database"]["requests"]


def cmd_big_commit(name):
    """One ~20 MB transaction with cache_size=1M, committed."""
    conn = connect(name, cache_size="1M")
    conn.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    hwm_start = vm_hwm_kib()
    result = {"rows": BIG_ROWS, "row_bytes": BIG_SIZE}
    start = time.monotonic()
    before = requests(conn)
    conn.execute("BEGIN")
    insert_big_rows(conn, range(1, BIG_ROWS + 1))
    mid = requests(conn)
    conn.execute("COMMIT")
    result["seconds"] = round(time.monotonic() - start, 2)
    result["puts_before_commit"] = mid["put"] - before["put"]
    result["bytes_up_before_commit"] = mid["bytes_up"] - before["bytes_up"]
    result["commit_records_before_commit"] = mid["put_if_absent"] - before["put_if_absent"]
    result["hwm_growth_kib"] = vm_hwm_kib() - hwm_start
    result["summary"] = summary(conn)
    result["digest"] = table_digest(conn)
    result["expected_digest"] = expected_digest(range(1, BIG_ROWS + 1))
    result["integrity"] = integrity(conn)
    result["version"] = stats(conn)["version"]
    emit(result)


BASE_ROWS = 100


def cmd_big_rollback(name):
    """A small committed table, then a ~20 MB transaction (cache_size=1M) that also deletes
    and changes committed rows, rolled back."""
    conn = connect(name, cache_size="1M")
    conn.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    for first in range(1, BASE_ROWS + 1, 10):
        conn.execute("BEGIN")
        insert_big_rows(conn, range(first, first + 10))
        conn.execute("COMMIT")
    result = {"base_rows": BASE_ROWS, "rows": BIG_ROWS, "row_bytes": BIG_SIZE}
    result["before"] = summary(conn)
    result["version_before"] = stats(conn)["version"]
    result["expected_digest"] = expected_digest(range(1, BASE_ROWS + 1))
    result["digest_before"] = table_digest(conn)
    hwm_start = vm_hwm_kib()
    start = time.monotonic()
    before = requests(conn)
    conn.execute("BEGIN")
    insert_big_rows(conn, range(BASE_ROWS + 1, BASE_ROWS + BIG_ROWS + 1))
    conn.execute("DELETE FROM big WHERE id % 3 = 0 AND id <= ?", (BASE_ROWS,))
    conn.execute("UPDATE big SET payload = zeroblob(100) WHERE id % 7 = 0 AND id <= ?", (BASE_ROWS,))
    result["inside"] = summary(conn)
    mid = requests(conn)
    conn.execute("ROLLBACK")
    result["seconds"] = round(time.monotonic() - start, 2)
    result["puts_before_rollback"] = mid["put"] - before["put"]
    result["hwm_growth_kib"] = vm_hwm_kib() - hwm_start
    result["after"] = summary(conn)
    result["digest_after"] = table_digest(conn)
    result["integrity"] = integrity(conn)
    result["version_after"] = stats(conn)["version"]
    after = requests(conn)
    result["commit_records_by_rollback"] = after["put_if_absent"] - mid["put_if_absent"]
    emit(result)


def cmd_digest(name):
    """The content of table big as a fresh process reads it."""
    conn = connect(name)
    emit({"summary": summary(conn), "digest": table_digest(conn), "integrity": integrity(conn),
          "version": stats(conn)["version"]})


def cmd_generations(name, stop_file):
    """Until `stop_file` exists, commits `UPDATE t SET gen = gen + 1`: every committed version
    has one generation in all rows, spread over many blocks."""
    conn = connect(name)
    stop = Path(stop_file)
    commits = 0
    while not stop.exists():
        try:
            conn.execute("UPDATE t SET gen = gen + 1")
            commits += 1
        except apsw.BusyError:
            pass
    emit({"commits": commits})


def cmd_observe(name, stop_file):
    """Until `stop_file` exists, reads table content's summary in fresh read transactions and
    reports every distinct one seen (with integrity_check each time)."""
    conn = connect(name)
    stop = Path(stop_file)
    seen = {}
    reads = 0
    while not stop.exists() or reads == 0:
        with conn:
            rows = conn.execute(
                "SELECT kind, count(*), sum(length(pad)) FROM content GROUP BY kind").fetchall()
            check = integrity(conn)
        key = json.dumps([list(row) for row in rows] + [check])
        seen[key] = seen.get(key, 0) + 1
        reads += 1
    emit({"reads": reads, "seen": seen})


def transfer_connection():
    conn = apsw.Connection(":memory:")
    conn.enable_load_extension(True)
    conn.load_extension(os.environ["S3VFS_LIB"])
    return conn


def cmd_transfer_memory(direction, uri, path, warm_uri, warm_path):
    """Serializes `uri` to `path` (or deserializes `path` into `uri`) and reports the peak RSS
    before and after; a small transfer of `warm_uri` first starts the runtime and client."""
    conn = transfer_connection()
    function = "s3vfs_serialize" if direction == "serialize" else "s3vfs_deserialize"
    conn.execute(f"SELECT {function}(?, ?, 'replace')", (warm_uri, warm_path)).fetchall()
    before = vm_hwm_kib()
    started = time.monotonic()
    written = conn.execute(f"SELECT {function}(?, ?, 'replace')", (uri, path)).fetchall()[0][0]
    emit({"bytes": written, "seconds": time.monotonic() - started,
          "hwm_before_kib": before, "hwm_after_kib": vm_hwm_kib()})


def process_requests():
    conn = apsw.Connection(":memory:")
    try:
        return json.loads(conn.execute("SELECT s3vfs_stats()").fetchone()[0])["process"]["detail"]
    finally:
        conn.close()


def cmd_reopen(name, block_size):
    """Reads table t through one connection, closes it, and reads it again through a new
    one: reports the requests each connection cost (its open included)."""
    costs, rows = [], []
    for _ in range(2):
        before = process_requests()
        conn = connect(name, block_size=block_size)
        rows.append(conn.execute("SELECT sum(length(val)), count(*) FROM t").fetchone())
        conn.close()
        after = process_requests()
        costs.append({kind: after[kind] - before[kind] for kind in ("get", "list", "put")})
    emit({"costs": costs, "rows": rows})


def cmd_cached_read(name, cache_dir):
    """Reads table t through the disk cache `cache_dir`: its digest, the requests the read cost
    (the open included) and the disk cache's counters."""
    before = process_requests()
    conn = connect(name, block_size=4096, cache_dir=cache_dir)
    rows = conn.execute("SELECT id, val FROM t ORDER BY id").fetchall()
    disk = stats(conn)["database"].get("disk_cache")
    conn.close()
    after = process_requests()
    emit({
        "digest": hashlib.sha256(repr(rows).encode()).hexdigest(),
        "rows": len(rows),
        "requests": {kind: after[kind] - before[kind] for kind in ("get", "list", "put")},
        "disk": disk,
    })


def cmd_lookups(name, params, keys):
    """Looks up rows `keys` (comma-separated) of table t in a fresh process, one at a time,
    with URI parameters `params` (`name=value` joined by `&`): the blocks each lookup had to
    fetch itself (cache misses; a block prefetch brought or is bringing is a hit), the
    requests of the whole process, and the prefetch and interior-page index counters."""
    conn = connect(name, **dict(pair.split("=", 1) for pair in params.split("&") if pair))
    misses = []
    for key in (int(key) for key in keys.split(",")):
        before = stats(conn)["database"]["cache"]["misses"]
        found = conn.execute("SELECT length(val) FROM t WHERE id = ?", (key,)).fetchall()
        if found != [(200,)]:
            raise AssertionError(f"row {key}: {found}")
        misses.append(stats(conn)["database"]["cache"]["misses"] - before)
    database = stats(conn)["database"]
    requests = process_requests()
    emit({"misses": misses, "requests": sum(requests[kind] for kind in ("get", "list", "put")),
          "prefetch": database["prefetch"], "interior": database["interior"],
          "integrity": integrity(conn)})
    conn.close()


def cmd_scan(name, params):
    """Reads table t whole in a fresh process, with URI parameters `params` as for lookups:
    its digest, PRAGMA integrity_check, and the interior-page index counters."""
    conn = connect(name, **dict(pair.split("=", 1) for pair in params.split("&") if pair))
    emit({"digest": table_digest(conn, "t", "val"), "integrity": integrity(conn),
          "interior": stats(conn)["database"]["interior"]})
    conn.close()


COMMANDS = {
    "generations": cmd_generations,
    "observe": cmd_observe,
    "transfer_memory": cmd_transfer_memory,
    "read": cmd_read,
    "insert": cmd_insert,
    "conflict": cmd_conflict,
    "increment": cmd_increment,
    "batches": cmd_batches,
    "fork": cmd_fork,
    "big_commit": cmd_big_commit,
    "big_rollback": cmd_big_rollback,
    "digest": cmd_digest,
    "reopen": cmd_reopen,
    "cached_read": cmd_cached_read,
    "lookups": cmd_lookups,
    "scan": cmd_scan,
}


if __name__ == "__main__":
    load()
    COMMANDS[sys.argv[1]](*sys.argv[2:])
