"""Shared helpers of the Python tests: loading the extension, opening s3vfs databases and
running worker processes (tests/python/s3vfs_worker.py) with timeouts.

Imported by the tests and by the workers, so it must not import pytest.
"""
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import apsw

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LIB = os.environ.get("S3VFS_LIB") or str(REPO / "target" / "debug" / "libs3vfs.so")
WORKER = str(HERE / "s3vfs_worker.py")

# What `eval "$(bash scripts/s3-server.sh env)"` exports and the extension needs.
REQUIRED_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3VFS_BUCKET")

SQLITE_BUSY = 5
SQLITE_BUSY_SNAPSHOT = 517

OPEN_FLAGS = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI

_loaded = False


def load():
    """Loads the extension into apsw's SQLite once; the VFS then stays registered."""
    global _loaded
    if not _loaded:
        loader = apsw.Connection(":memory:")
        loader.enable_load_extension(True)
        loader.load_extension(LIB)
        loader.close()
        _loaded = True


def unique_name(tag):
    """A database name no other test run uses."""
    return f"pytest-{tag}-{uuid.uuid4().hex}.db"


def uri(name, **params):
    query = urllib.parse.urlencode({"vfs": "s3vfs", **params})
    return f"file:{name}?{query}"


def connect(name, busy_timeout_ms=10_000, **params):
    """An apsw connection to s3vfs database `name`, created if missing."""
    load()
    conn = apsw.Connection(uri(name, **params), flags=OPEN_FLAGS)
    conn.set_busy_timeout(busy_timeout_ms)
    return conn


def other_endpoint():
    """The same server under another spelling: a new client, with caches of its own."""
    parsed = urllib.parse.urlsplit(os.environ["AWS_ENDPOINT_URL"])
    host = "localhost" if parsed.hostname == "127.0.0.1" else "127.0.0.1"
    return f"{parsed.scheme}://{host}:{parsed.port}"


def s3():
    """A plain S3 client of the local server, to look at what s3vfs stored."""
    import boto3
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])


def stored(name):
    """Every object of database `name`: key -> body."""
    client, bucket = s3(), os.environ["S3VFS_BUCKET"]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{name}/")
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def text_table(name, transactions, row, **params):
    """Table t(id, val) of `name` with 16 KiB blocks: 20 rows of text `row(id)` per transaction,
    in `transactions` transactions, so that there are records carrying pages and, past 100, a
    checkpoint after the first. Returns the table's digest."""
    from s3vfs_worker import table_digest
    conn = connect(name, block_size="16k", **params)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, val TEXT NOT NULL)")
    for batch in range(transactions):
        with conn:
            for key in range(batch * 20, batch * 20 + 20):
                conn.execute("INSERT INTO t VALUES (?, ?)", (key, row(key)))
    expected = table_digest(conn, "t", "val")
    conn.close()
    return expected


def integrity(conn):
    return [row[0] for row in conn.execute("PRAGMA integrity_check")]


def stats(conn):
    return json.loads(conn.execute("SELECT s3vfs_stats()").fetchall()[0][0])


def extended_code(error):
    return getattr(error, "extendedresult", None)


def worker_env():
    env = dict(os.environ)
    env["S3VFS_LIB"] = LIB
    env["PYTHONUNBUFFERED"] = "1"
    return env


def worker_command(command, *args):
    return [sys.executable, WORKER, command, *map(str, args)]


def start_worker(command, *args, **popen_kw):
    """Starts a worker process; its stdout and stderr are pipes of text."""
    return subprocess.Popen(
        worker_command(command, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_env(),
        **popen_kw,
    )


class WorkerFailed(AssertionError):
    pass


def finish_worker(proc, timeout):
    """Waits for a worker (killing it after `timeout` s) and returns the JSON object it printed
    last; raises WorkerFailed (an AssertionError) with its output otherwise."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise WorkerFailed(
            f"worker {proc.args[2:]} did not finish within {timeout} s (hung?)\n"
            f"stdout:\n{out}\nstderr:\n{err}"
        )
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise WorkerFailed(
            f"worker {proc.args[2:]} exited with status {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
        )
    return json.loads(lines[-1])


def run_worker(command, *args, timeout=60):
    return finish_worker(start_worker(command, *args), timeout)


def proxy_call(url, path, method="GET"):
    """A call to bench/proxy.py's own paths (/__stats, /__config?..., /__reset)."""
    request = urllib.request.Request(url + path, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())
