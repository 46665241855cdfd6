"""End-to-end tests of the s3vfs extension through apsw, against the local S3 test server.

Run:  bash scripts/s3-server.sh start && eval "$(bash scripts/s3-server.sh env)"
      python3 -m pytest tests/python

Each test uses databases with fresh names, so runs are independent of each other. Work in
other processes runs in tests/python/s3vfs_worker.py, always under a timeout.
"""
import json
import random
import signal
import subprocess
import threading
import time

import pytest

from s3vfs_util import (
    SQLITE_BUSY_SNAPSHOT,
    connect,
    finish_worker,
    worker_command,
    worker_env,
    integrity,
    run_worker,
    start_worker,
    stats,
    unique_name,
)


def counter_value(conn):
    return conn.execute("SELECT n FROM counter WHERE id = 1").fetchone()[0]


def make_counter(name, start):
    conn = connect(name)
    conn.execute("CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, last INTEGER)")
    conn.execute("CREATE TABLE log(worker INTEGER NOT NULL, value INTEGER NOT NULL)")
    conn.execute("INSERT INTO counter(id, n) VALUES(1, ?)", (start,))
    return conn


def test_apsw_round_trip():
    name = unique_name("roundtrip")
    conn = connect(name)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, val TEXT NOT NULL)")
    rows = [(i, f"value-{i}-" + "x" * (i % 300)) for i in range(1, 1001)]
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t(id, val) VALUES(?, ?)", rows)
    conn.execute("COMMIT")
    assert integrity(conn) == ["ok"]
    version = stats(conn)["version"]
    assert version >= 2, f"two transactions committed, yet version is {version}"
    conn.close()

    result = run_worker("read", name)
    assert result["integrity"] == ["ok"]
    assert result["version"] == version
    assert result["rows"] == [list(row) for row in rows]


SYNCHRONOUS_LEVELS = {"off": 0, "normal": 1, "full": 2, "extra": 3}


@pytest.mark.parametrize(
    "journal_mode,synchronous,rounds",
    [
        ("delete", "full", 5),
        ("delete", "off", 2),
        ("truncate", "normal", 2),
        ("persist", "off", 2),
        ("memory", "off", 2),
        ("off", "off", 2),
        ("off", "extra", 2),
    ],
)
def test_two_processes_conflict(tmp_path, journal_mode, synchronous, rounds):
    """Two writers built on the same version, each bumping the header's change counter to the
    same value: one wins, the other gets BUSY_SNAPSHOT, and nothing of the loser stays in its
    connection's page cache: its next transaction reads the winner's row."""
    name = unique_name("conflict")
    start = 100
    conn = make_counter(name, start)
    version_before = stats(conn)["version"]
    for round_number in range(rounds):
        barrier = tmp_path / f"round-{round_number}"
        barrier.mkdir()
        racers = [
            start_worker("conflict", name, barrier, me, 2, journal_mode, synchronous) for me in range(2)
        ]
        results = [finish_worker(racer, timeout=60) for racer in racers]
        expected = start + round_number
        detail = f"round {round_number}: {results}"
        assert [r["seen"] for r in results] == [expected, expected], detail
        assert all(
            r["pragmas"] == [journal_mode, SYNCHRONOUS_LEVELS[synchronous]] for r in results
        ), f"the pragmas are in force as set; {detail}"
        winners = [r for r in results if r["committed"]]
        losers = [r for r in results if not r["committed"]]
        assert len(winners) == 1 and len(losers) == 1, f"exactly one commit must win; {detail}"
        loser = losers[0]
        assert loser["error"] == "BusyError", detail
        assert loser["extended"] == SQLITE_BUSY_SNAPSHOT, detail
        # SQLite rolled the loser's transaction back: nothing of it is left to commit later.
        assert loser["in_transaction_after"] is False, detail
        assert all(r["after"] == expected + 1 for r in results), f"no lost update, no double apply; {detail}"
        # The loser's page cache kept nothing of its own write: it reads the winner's signature.
        assert all(r["last_after"] == winners[0]["me"] for r in results), detail
        assert all(r["integrity"] == ["ok"] for r in results), detail
        assert counter_value(conn) == expected + 1, detail
    assert counter_value(conn) == start + rounds
    assert integrity(conn) == ["ok"]
    # Only the winners made versions: a failed commit leaves no trace.
    assert stats(conn)["version"] == version_before + rounds


def test_many_writers_no_lost_update():
    name = unique_name("writers")
    conn = make_counter(name, 0)
    version_before = stats(conn)["version"]
    writers, increments = 4, 10
    procs = [start_worker("increment", name, me, increments) for me in range(writers)]
    results = [finish_worker(proc, timeout=75) for proc in procs]
    total = writers * increments
    assert [r["done"] for r in results] == [increments] * writers, results
    for r in results:
        assert set(r["busy"]) <= {str(SQLITE_BUSY_SNAPSHOT)}, f"unexpected BUSY codes: {results}"
    assert counter_value(conn) == total, results
    assert conn.execute("SELECT count(*) FROM log").fetchone()[0] == total
    values = [row[0] for row in conn.execute("SELECT value FROM log ORDER BY value")]
    assert values == list(range(1, total + 1)), "every increment must see the one before it"
    per_worker = dict(conn.execute("SELECT worker, count(*) FROM log GROUP BY worker").fetchall())
    assert per_worker == {me: increments for me in range(writers)}
    assert integrity(conn) == ["ok"]
    # One version per successful increment: the retried attempts left nothing behind.
    assert stats(conn)["version"] == version_before + total, results


def test_second_process_sees_commits():
    name = unique_name("visibility")
    reader = connect(name)
    reader.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, val TEXT NOT NULL)")
    reader.execute("INSERT INTO t(id, val) VALUES(0, 'from-a')")

    def ids():
        return [row[0] for row in reader.execute("SELECT id FROM t ORDER BY id")]

    assert ids() == [0]
    # A read transaction keeps the version it started on while another process commits.
    reader.execute("BEGIN")
    assert ids() == [0]
    run_worker("insert", name, 1, 3)
    assert ids() == [0], "a read transaction must not see a commit made after it started"
    reader.execute("COMMIT")
    # The next read transaction of the same connection sees it.
    assert ids() == [0, 1, 2, 3]
    run_worker("insert", name, 4, 2)
    assert ids() == [0, 1, 2, 3, 4, 5]
    vals = dict(reader.execute("SELECT id, val FROM t").fetchall())
    assert vals[5] == "from-b-5"
    assert integrity(reader) == ["ok"]


class LineCollector:
    """Collects a process's stdout lines in a thread, so the test can wait for one."""

    def __init__(self, stream):
        self.lines = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream):
        for line in stream:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append(None)
            self.changed.notify_all()

    def wait_for(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                if any(line is not None and line.startswith(prefix) for line in self.lines):
                    return True
                if None in self.lines or time.monotonic() > deadline:
                    return False
                self.changed.wait(timeout=0.1)

    def finish(self):
        self.thread.join(timeout=10)
        return [line for line in self.lines if line is not None]


def test_sigkill_mid_commit():
    name = unique_name("sigkill")
    conn = connect(name, block_size=4096)
    conn.execute(
        "CREATE TABLE rows(batch INTEGER NOT NULL, i INTEGER NOT NULL, payload BLOB NOT NULL, "
        "PRIMARY KEY(batch, i))"
    )
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    reported = set()
    present_before = set()
    for round_number in range(6):
        child = start_worker("batches", name)
        lines = LineCollector(child.stdout)
        started = lines.wait_for('{"started_after"', timeout=30)
        delay = rng.uniform(0.05, 1.5)
        if started:
            time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        try:
            child.wait(timeout=10)
        except Exception:
            child.kill()
            raise
        err = child.stderr.read()
        out = lines.finish()
        detail = f"seed {seed}, round {round_number}, delay {delay:.2f} s; child stdout {out}; stderr:\n{err}"
        assert started, f"the writer never started; {detail}"
        assert child.returncode == -signal.SIGKILL, f"the writer died before the kill; {detail}"
        messages = [json.loads(line) for line in out if line.startswith("{")]
        committed = {m["committed"] for m in messages if "committed" in m}
        started_after = next(m["started_after"] for m in messages if "started_after" in m)
        reported |= committed

        assert integrity(conn) == ["ok"], detail
        counts = dict(conn.execute("SELECT batch, count(*) FROM rows GROUP BY batch").fetchall())
        partial = {batch: count for batch, count in counts.items() if count != 200}
        assert not partial, f"partial transactions {partial}; {detail}"
        present = set(counts)
        assert reported <= present, f"committed batches lost: {sorted(reported - present)}; {detail}"
        assert present_before <= present, f"batches vanished: {sorted(present_before - present)}; {detail}"
        # At most the batch whose COMMIT returned just before the kill is unreported.
        unreported = present - present_before - committed
        next_batch = max(committed | {started_after}) + 1
        assert unreported <= {next_batch}, f"unexpected batches {sorted(unreported)}; {detail}"
        present_before = present
    assert reported, f"no batch was committed in any round (seed {seed})"
    assert sorted(present_before) == list(range(1, len(present_before) + 1))


def test_fork():
    name = unique_name("fork")
    result = run_worker("fork", name, timeout=60)
    assert result["before"] == ["parent-before-fork"]
    assert result["child_status"] == 0, f"the forked child failed: {result}"
    assert result["after"] == ["parent-before-fork", "child"], result
    assert result["final"] == ["parent-before-fork", "child", "parent-after-fork"], result
    assert result["integrity"] == ["ok"]


def expected_summary(first, last, size):
    return {"count": last - first + 1, "id_sum": (first + last) * (last - first + 1) // 2,
            "bytes": (last - first + 1) * size}


def test_large_transaction_bounded():
    name = unique_name("big")
    r = run_worker("big_commit", name, timeout=120)
    committed = expected_summary(1, r["rows"], r["row_bytes"])
    # The transaction did not keep its ~20 MB for COMMIT: it spilled blocks to S3 early ...
    assert r["puts_before_commit"] > 0, r
    assert r["bytes_up_before_commit"] >= 10 * 1024 * 1024, r
    # ... without publishing anything before COMMIT ...
    assert r["commit_records_before_commit"] == 0, r
    # ... and peak memory stayed far below the transaction's size.
    assert r["hwm_growth_kib"] < 12 * 1024, f"peak memory grew by {r['hwm_growth_kib']} KiB: {r}"
    assert r["integrity"] == ["ok"], r
    assert r["summary"] == committed, r
    assert r["digest"] == r["expected_digest"], f"the committed rows read back differ: {r}"

    # Another process reads exactly what was committed.
    fresh = run_worker("digest", name, timeout=60)
    assert fresh["version"] == r["version"], fresh
    assert fresh["integrity"] == ["ok"], fresh
    assert fresh["summary"] == committed, fresh
    assert fresh["digest"] == r["expected_digest"], f"a fresh process reads other rows: {fresh}"


def test_large_transaction_rollback():
    name = unique_name("bigrollback")
    r = run_worker("big_rollback", name, timeout=120)
    base = expected_summary(1, r["base_rows"], r["row_bytes"])
    assert r["before"] == base, r
    assert r["digest_before"] == r["expected_digest"], r
    assert r["puts_before_rollback"] > 0, f"the transaction never spilled: {r}"
    assert r["hwm_growth_kib"] < 12 * 1024, f"peak memory grew by {r['hwm_growth_kib']} KiB: {r}"
    # The ROLLBACK leaves the database as it was ...
    assert r["integrity"] == ["ok"], r
    assert r["after"] == base, r
    assert r["digest_after"] == r["expected_digest"], f"rows differ after ROLLBACK: {r}"
    # ... and publishes nothing: no new version for other processes to conflict with.
    assert r["commit_records_by_rollback"] == 0, f"ROLLBACK wrote a commit record: {r}"
    assert r["version_after"] == r["version_before"], f"ROLLBACK published a version: {r}"

    fresh = run_worker("digest", name, timeout=60)
    assert fresh["integrity"] == ["ok"], fresh
    assert fresh["summary"] == base, fresh
    assert fresh["version"] == r["version_after"], fresh
    assert fresh["digest"] == r["expected_digest"], f"a fresh process reads other rows: {fresh}"

    # Before the ROLLBACK, the transaction saw all of its own changes.
    deleted = r["base_rows"] // 3
    assert r["inside"]["count"] == r["base_rows"] + r["rows"] - deleted, f"the transaction lost its own rows: {r}"


def test_a_new_connection_finds_the_blocks_a_closed_one_fetched():
    """The process keeps a database's block cache after its last connection closes (within
    S3VFS_IDLE_CACHE_SIZE): a connection opened later pays its freshness check and no block
    GET. With a budget of 0, the new connection fetches every block again."""
    name = unique_name("reopen")
    conn = connect(name, block_size=4096)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, val TEXT NOT NULL)")
    conn.executemany("INSERT INTO t(val) VALUES(?)", [("x" * 500,) for _ in range(400)])
    conn.close()
    kept = run_worker("reopen", name, 4096)
    first, second = kept["costs"]
    assert kept["rows"] == [[200000, 400], [200000, 400]], kept
    assert first["get"] > 40, f"the first connection fetches the blocks: {kept}"
    # Two read transactions (SQLite reads the schema, then runs the query), each one
    # freshness GET, and no block GET.
    assert second == {"get": 2, "list": 0, "put": 0}, f"only the freshness GETs: {kept}"

    env = dict(worker_env(), S3VFS_IDLE_CACHE_SIZE="0")
    proc = subprocess.Popen(
        worker_command("reopen", name, 4096), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )
    dropped = finish_worker(proc, timeout=60)
    first, second = dropped["costs"]
    assert second["get"] >= first["get"] - 1 > 40, f"nothing kept with a budget of 0: {dropped}"
