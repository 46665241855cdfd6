"""One benchmark cell: one workload on one system, run in a fresh process by bench/run.py.

    python3 bench/cell.py '{"system": "s3vfs", "workload": "insert_small", ...}'

The argument is a JSON object (see run.py `cell_spec`). The cell does its setup, reads the
proxy's counters, runs the timed part, reads the counters again, checks the result (untimed)
and prints one JSON line: wall seconds, request deltas by kind, bytes up and down, peak RSS of
this process (VmHWM, KiB) and, for s3vfs, its own request count from s3vfs_stats(). A
failed query raises, so the process exits non-zero with a traceback on stderr; a workload the
system cannot run (s3vfs_serialize missing from the loaded library) prints {"unavailable": ...}.

Systems:
  local        plain SQLite on a local file (the floor)
  s3vfs        this project's extension, loaded into apsw, through the proxy
  sqlite-s3vfs the Python package sqlite-s3vfs (apsw VFS on boto3), through the proxy
"""
import json
import os
import random
import resource
import shutil
import sys
import time
import urllib.parse
import urllib.request

import apsw

OPEN_FLAGS = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI
ROW_TEXT_CHARS = 90  # with the two integers, a row is ~100 bytes of record


def row(rng):
    return rng.randrange(1 << 40), rng.randbytes(ROW_TEXT_CHARS // 2).hex()


def rows(seed, count):
    rng = random.Random(seed)
    for _ in range(count):
        yield row(rng)


def proxy_stats(spec):
    if not spec.get("proxy"):
        return None
    with urllib.request.urlopen(spec["proxy"] + "/__stats", timeout=30) as response:
        return json.load(response)


def stats_delta(before, after):
    if before is None:
        return None
    return {
        "requests": {kind: after["requests"][kind] - before["requests"][kind] for kind in after["requests"]},
        "bytes_up": after["bytes_up"] - before["bytes_up"],
        "bytes_down": after["bytes_down"] - before["bytes_down"],
        "errors": after["errors"] - before["errors"],
        "failed": after["failed"] - before["failed"],
        "block_gets": after["block_gets"] - before["block_gets"],
    }


class System:
    """How one system opens a database and moves a whole database in and out."""

    def __init__(self, spec):
        self.spec = spec

    def connect(self, name):
        raise NotImplementedError

    def own_requests(self):
        return None

    def deserialize(self, name, source_path):
        raise NotImplementedError

    def serialize(self, name, target_path):
        raise NotImplementedError


class Local(System):
    def path(self, name):
        return os.path.join(self.spec["local_dir"], name)

    def connect(self, name):
        return apsw.Connection(self.path(name), flags=OPEN_FLAGS)

    def deserialize(self, name, source_path):
        shutil.copyfile(source_path, self.path(name))
        return os.path.getsize(self.path(name))

    def serialize(self, name, target_path):
        shutil.copyfile(self.path(name), target_path)
        return os.path.getsize(target_path)


class S3vfs(System):
    def __init__(self, spec):
        super().__init__(spec)
        self.loader = apsw.Connection(":memory:")
        self.loader.enable_load_extension(True)
        self.loader.load_extension(spec["lib"])

    def uri(self, name, vfs=True):
        params = {"bucket": self.spec["bucket"], "endpoint": self.spec["proxy"]}
        # BENCH_S3VFS_PARAMS (e.g. "block_size=16k") adds URI parameters, to compare settings;
        # a workload's own (its block size, prefetch, disk cache) come last.
        params.update(urllib.parse.parse_qsl(os.environ.get("BENCH_S3VFS_PARAMS", "")))
        params.update(self.spec.get("params", {}))
        if vfs:
            params = {"vfs": "s3vfs", **params}
        return f"file:{name}?{urllib.parse.urlencode(params)}"

    def connect(self, name):
        return apsw.Connection(self.uri(name), flags=OPEN_FLAGS)

    def own_requests(self):
        # The process-wide counters of every s3vfs database this process opened.
        conn = apsw.Connection(":memory:")
        try:
            return json.loads(conn.execute("SELECT s3vfs_stats()").fetchall()[0][0])["process"]["requests"]
        finally:
            conn.close()

    def has(self, function):
        found = self.loader.execute("SELECT 1 FROM pragma_function_list WHERE name = ?", (function,)).fetchall()
        return bool(found)

    def deserialize(self, name, source_path):
        return self.loader.execute("SELECT s3vfs_deserialize(?, ?)", (self.uri(name, vfs=False), source_path)).fetchall()[0][0]

    def serialize(self, name, target_path):
        return self.loader.execute("SELECT s3vfs_serialize(?, ?)", (self.uri(name, vfs=False), target_path)).fetchall()[0][0]


class SqliteS3vfsPackage(System):
    """The PyPI package sqlite-s3vfs: one S3 object per 4096-byte block, no locking."""

    def __init__(self, spec):
        super().__init__(spec)
        import boto3
        import sqlite_s3vfs
        from botocore.config import Config

        resource_ = boto3.resource(
            "s3", endpoint_url=spec["proxy"], config=Config(s3={"addressing_style": "path"})
        )
        self.vfs = sqlite_s3vfs.S3VFS(bucket=resource_.Bucket(spec["bucket"]), block_size=4096)

    def connect(self, name):
        return apsw.Connection(name, vfs=self.vfs.name)

    def deserialize(self, name, source_path):
        with open(source_path, "rb") as source:
            self.vfs.deserialize_iter(name, iter(lambda: source.read(1 << 20), b""))
        return os.path.getsize(source_path)

    def serialize(self, name, target_path):
        written = 0
        with open(target_path, "wb") as target:
            for chunk in self.vfs.serialize_iter(name):
                target.write(chunk)
                written += len(chunk)
        return written


SYSTEMS = {"local": Local, "s3vfs": S3vfs, "sqlite-s3vfs": SqliteS3vfsPackage}
S3VFS_ONLY = ("lookup_disk",)


def create_table(conn):
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, v TEXT NOT NULL)")


def insert_rows(conn, seed, count):
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t(n, v) VALUES(?, ?)", rows(seed, count))
    conn.execute("COMMIT")


def lookup_keys(spec):
    return random.Random(7).sample(range(1, spec["big_rows"] + 1), spec["lookups"])


def large_keys(spec):
    return random.Random(11).sample(range(1, spec["large_rows"] + 1), spec["large_lookups"])


def large_lookups(conn, keys):
    for key in keys:
        found = conn.execute("SELECT length(v) FROM t WHERE id = ?", (key,)).fetchall()
        if found != [(1000,)]:
            raise AssertionError(f"row {key}: {found}")


def warm_disk_cache(spec):
    """Runs the lookups of `spec` in another process with its cache_dir, which leaves the
    directory holding their blocks."""
    import subprocess

    warm = subprocess.run([sys.executable, __file__, json.dumps({**spec, "workload": "lookup_cold"})],
                          capture_output=True, text=True)
    if warm.returncode != 0:
        raise RuntimeError(f"warming the disk cache failed: {warm.stderr[-2000:]}")


def lookups(conn, keys):
    for key in keys:
        found = conn.execute("SELECT n, v FROM t WHERE id = ?", (key,)).fetchall()
        if len(found) != 1:
            raise AssertionError(f"row {key} not found")


def lookups_in_threads(system, name, keys, threads):
    """`keys` split over `threads` threads, each with a connection of its own, all at once."""
    import threading

    errors = []
    connections = [system.connect(name) for _ in range(threads)]

    def work(conn, share):
        try:
            lookups(conn, share)
        except Exception as error:  # noqa: BLE001 - reported after the join
            errors.append(error)

    workers = [
        threading.Thread(target=work, args=(conn, keys[index::threads]))
        for index, conn in enumerate(connections)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for conn in connections:
        conn.close()
    if errors:
        raise errors[0]


def lookups_connecting(system, name, keys):
    """One connection per lookup, as a web app that opens one per request."""
    for key in keys:
        conn = system.connect(name)
        found = conn.execute("SELECT n, v FROM t WHERE id = ?", (key,)).fetchall()
        conn.close()
        if len(found) != 1:
            raise AssertionError(f"row {key} not found")


def count_rows(conn):
    return conn.execute("SELECT count(*) FROM t").fetchall()[0][0]


def run(spec):
    system = SYSTEMS[spec["system"]](spec)
    workload = spec["workload"]
    if workload in ("deserialize", "serialize") and isinstance(system, S3vfs):
        missing = [f for f in ("s3vfs_serialize", "s3vfs_deserialize") if not system.has(f)]
        if missing:
            return {"unavailable": f"{', '.join(missing)} not in the loaded library"}
    check = {}
    conn = None
    if workload in S3VFS_ONLY and not isinstance(system, S3vfs):
        return {"unavailable": "an s3vfs feature"}
    if workload.startswith("large_") and not isinstance(system, (S3vfs, Local)):
        return {"unavailable": "deserializing 1 GB takes this system over half an hour"}

    # Setup (untimed).
    if workload == "txns":
        setup = system.connect(spec["db"])
        create_table(setup)
        setup.close()
    if workload == "txns_large":
        setup = system.connect(spec["db"])
        check["before"] = count_rows(setup)
        setup.close()
    if workload == "lookup_warm":
        conn = system.connect(spec["db"])
        keys = lookup_keys(spec)
        lookups(conn, keys)
    if workload == "lookup_disk":
        warm_disk_cache(spec)
    if workload.startswith("large_") and not spec.get("large_ready"):
        system.deserialize(spec["db"], spec["large_source"])
    if workload == "serialize":
        target_path = spec["serialize_out"]
        if os.path.exists(target_path):
            os.remove(target_path)

    before = proxy_stats(spec)
    own_before = system.own_requests()
    start = time.perf_counter()

    if workload in ("insert_small", "insert_big"):
        conn = system.connect(spec["db"])
        create_table(conn)
        insert_rows(conn, spec["seed"], spec["rows"])
    elif workload == "txns":
        conn = system.connect(spec["db"])
        for n, v in rows(spec["seed"], spec["txns"]):
            conn.execute("INSERT INTO t(n, v) VALUES(?, ?)", (n, v))
    elif workload == "txns_large":
        conn = system.connect(spec["db"])
        for n, v in rows(spec["seed"], spec["txns"]):
            conn.execute("INSERT INTO t(n, v) VALUES(?, ?)", (n, v))
    elif workload == "lookup_cold":
        conn = system.connect(spec["db"])
        lookups(conn, lookup_keys(spec))
    elif workload == "lookup_warm":
        lookups(conn, keys)
    elif workload == "lookup_disk":
        conn = system.connect(spec["db"])
        lookups(conn, lookup_keys(spec))
    elif workload.startswith("large_"):
        conn = system.connect(spec["db"])
        large_lookups(conn, large_keys(spec))
    elif workload == "lookup_threads":
        lookups_in_threads(system, spec["db"], lookup_keys(spec), spec["threads"])
    elif workload == "lookup_connect":
        lookups_connecting(system, spec["db"], lookup_keys(spec)[: spec["connects"]])
    elif workload == "scan":
        conn = system.connect(spec["db"])
        check["rows"], check["sum"] = conn.execute("SELECT COUNT(*), SUM(n) FROM t").fetchall()[0]
    elif workload == "index":
        conn = system.connect(spec["db"])
        conn.execute("CREATE INDEX t_n ON t(n)")
    elif workload == "deserialize":
        check["bytes"] = system.deserialize(spec["db"], spec["serialize_source"])
    elif workload == "serialize":
        check["bytes"] = system.serialize(spec["db"], target_path)
    else:
        raise ValueError(f"unknown workload {workload}")

    wall = time.perf_counter() - start
    after = proxy_stats(spec)
    own_after = system.own_requests()

    # Checks (untimed): a wrong result is a failure, like a failed query.
    if workload in ("insert_small", "insert_big"):
        if count_rows(conn) != spec["rows"]:
            raise AssertionError("inserted rows missing")
    elif workload == "txns":
        if count_rows(conn) != spec["txns"]:
            raise AssertionError("committed rows missing")
    elif workload == "txns_large":
        if count_rows(conn) != check["before"] + spec["txns"]:
            raise AssertionError("committed rows missing")
    elif workload == "scan" and check["rows"] != spec["big_rows"]:
        raise AssertionError(f"scan counted {check['rows']} rows, expected {spec['big_rows']}")
    elif workload == "index":
        used = conn.execute("EXPLAIN QUERY PLAN SELECT id FROM t WHERE n = 1").fetchall()
        if "t_n" not in repr(used):
            raise AssertionError("index t_n not used after CREATE INDEX")
    elif workload in ("deserialize", "serialize"):
        expected = os.path.getsize(spec["serialize_source"])
        if check["bytes"] != expected:
            raise AssertionError(f"{workload} moved {check['bytes']} bytes, expected {expected}")
        if workload == "serialize":
            copy = apsw.Connection(target_path, flags=apsw.SQLITE_OPEN_READONLY)
            result = copy.execute("PRAGMA quick_check").fetchall()
            copy.close()
            if result != [("ok",)]:
                raise AssertionError(f"serialized file fails quick_check: {result[:3]}")
            os.remove(target_path)
    if conn is not None:
        conn.close()

    result = {"wall": wall, "proxy": stats_delta(before, after), "check": check}
    if own_before is not None:
        result["own_requests"] = own_after - own_before
    return result


def peak_rss_kib():
    """The peak resident set of this process. VmHWM belongs to this address space; on Linux
    ru_maxrss of RUSAGE_SELF would also carry over the parent's peak from before the exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss


def main():
    spec = json.loads(sys.argv[1])
    result = run(spec)
    result["max_rss_kib"] = peak_rss_kib()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
