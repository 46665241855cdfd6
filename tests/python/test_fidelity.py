"""Fidelity: generated SQL workloads (tests/python/fidelity.py) run through s3vfs and through a
local file with the same SQLite must give identical output, statement by statement, across
page sizes 512/4096/65536, journal modes DELETE/TRUNCATE/PERSIST/MEMORY/OFF and synchronous
OFF/NORMAL/FULL, with a block cache of four blocks so that it evicts all the time (and a
transaction's dirty blocks spill to the store early).

Seeded and reproducible: FIDELITY_SEED picks the seed (default below), FIDELITY_STATEMENTS the
length of each workload. A difference fails with the seed, the workload and the first
differing statement. Each case prints one line of counts (run pytest with -s to see them).
"""
import os
import uuid

import apsw
import pytest

from fidelity import AUX, JOURNAL_MODES, PAGE_SIZES, SYNCHRONOUS, digest_rows, workload
from s3vfs_util import OPEN_FLAGS, load, unique_name, uri

SEED = os.environ.get("FIDELITY_SEED", "20261130")
STATEMENTS = int(os.environ.get("FIDELITY_STATEMENTS", "70"))
BLOCK_SIZES = {512: 4096, 4096: 16384, 65536: 65536}
CACHE_BLOCKS = 16

CASES = [
    (page, journal, sync) for page in PAGE_SIZES for journal in JOURNAL_MODES for sync in SYNCHRONOUS
]


class Side:
    """One of the two databases a workload runs on, with its connection."""

    def __init__(self, main, aux, into):
        self.main, self.aux, self.into = main, aux, into
        self.conn = None

    def open(self, settings):
        self.conn = apsw.Connection(self.main, flags=OPEN_FLAGS)
        self.conn.set_busy_timeout(10_000)
        for text in settings:
            self.conn.execute(text).fetchall()

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self, step, settings):
        """The output of one step: its rows, or its error."""
        kind = step[0]
        try:
            if kind == "sql":
                text = step[1].replace(AUX, quote(self.aux))
                return ("rows", self.conn.execute(text).fetchall())
            if kind == "reopen":
                self.close()
                self.open(settings)
                return ("reopened",)
            if kind == "digest":
                return ("digest", digest(self.conn, step[1]))
            if kind == "vacuum_into":
                target = self.into(step[1])
                self.conn.execute(f"VACUUM INTO {quote(target)}").fetchall()
                copy = apsw.Connection(target, flags=OPEN_FLAGS)
                try:
                    return ("copy", copy.execute("PRAGMA integrity_check").fetchall(), digest(copy, "main"))
                finally:
                    copy.close()
        except apsw.Error as error:
            return ("error", type(error).__name__, str(error))
        raise AssertionError(f"unknown step {step}")


def quote(text):
    return "'" + text.replace("'", "''") + "'"


def digest(conn, schema):
    """Schema and content of every table of `schema`, as (name, rows, digest) triples."""
    tables = conn.execute(
        f"SELECT name, sql FROM {schema}.sqlite_schema WHERE type = 'table' ORDER BY name"
    ).fetchall()
    result = [("schema", digest_rows(conn.execute(
        f"SELECT type, name, tbl_name, sql FROM {schema}.sqlite_schema ORDER BY type, name"
    ).fetchall()))]
    for name, _ in tables:
        rows = conn.execute(f'SELECT * FROM {schema}."{name}"').fetchall()
        result.append((name, len(rows), digest_rows(rows)))
    return result


def shown(output, limit=600):
    text = repr(output)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


@pytest.fixture(scope="module")
def bucket():
    """A bucket of this module's own: a LIST on the local server costs time in proportion to
    everything in the bucket, and the shared one holds every other test's objects."""
    import boto3

    s3 = boto3.client("s3")
    name = f"fidelity-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=name, Delete={"Objects": keys[start:start + 1000], "Quiet": True})
    s3.delete_bucket(Bucket=name)


@pytest.mark.parametrize(
    "page_size,journal_mode,synchronous", CASES, ids=[f"{p}-{j}-{s}" for p, j, s in CASES]
)
def test_s3vfs_answers_as_a_local_file(bucket, tmp_path, page_size, journal_mode, synchronous):
    load()
    steps = workload(SEED, page_size, journal_mode, synchronous, STATEMENTS).build()
    settings = [
        f"PRAGMA journal_mode={journal_mode}",
        f"PRAGMA synchronous={synchronous}",
        "PRAGMA cache_size=16",
    ]
    name = unique_name(f"fidelity-{page_size}-{journal_mode}-{synchronous}")
    block_size = BLOCK_SIZES[page_size]
    params = {"bucket": bucket, "block_size": block_size, "cache_size": CACHE_BLOCKS * block_size}
    s3 = Side(
        uri(name, **params),
        uri(name.replace(".db", "-aux.db"), **params),
        lambda number: uri(name.replace(".db", f"-into-{number}.db"), **params),
    )
    local = Side(
        str(tmp_path / "local.db"),
        str(tmp_path / "aux.db"),
        lambda number: str(tmp_path / f"into-{number}.db"),
    )
    statements = identical = 0
    try:
        for side in (local, s3):
            side.open([])
        for index, step in enumerate(steps):
            expected = local.run(step, settings)
            actual = s3.run(step, settings)
            statements += 1
            if expected != actual:
                pytest.fail(
                    f"s3vfs and a local file differ at step {index} of the workload of seed "
                    f"{SEED!r}, page_size={page_size}, journal_mode={journal_mode}, "
                    f"synchronous={synchronous} (rerun: FIDELITY_SEED={SEED} python3 -m pytest "
                    f"tests/python/test_fidelity.py -k '{page_size}-{journal_mode}-{synchronous}'):\n"
                    f"  step:       {shown(step, 2000)}\n"
                    f"  local file: {shown(expected)}\n"
                    f"  s3vfs:      {shown(actual)}",
                    pytrace=False,
                )
            identical += 1
    finally:
        local.close()
        s3.close()
    sql_statements = sum(1 for step in steps if step[0] == "sql")
    print(
        f"fidelity {page_size}-{journal_mode}-{synchronous}: {statements} steps "
        f"({sql_statements} SQL statements), {identical} identical"
    )
    assert identical == statements == len(steps) > 0
