"""Databases written in storage format 1 (tests/fixtures/format1, made by a format-1 build)
keep opening, reading and time travelling, and their next commit upgrades them to format 2."""
import json
import os
from pathlib import Path

import boto3

from s3vfs_util import REPO, connect, integrity, unique_name

FIXTURE = REPO / "tests" / "fixtures" / "format1"


def rows(conn):
    return [list(row) for row in conn.execute("SELECT id, v FROM t ORDER BY id")]


def upload(name):
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    bucket = os.environ["S3VFS_BUCKET"]
    objects = FIXTURE / "objects"
    for path in sorted(objects.rglob("*")):
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=f"{name}/{path.relative_to(objects).as_posix()}", Body=path.read_bytes())
    return s3, bucket


def test_a_format_1_database_opens_reads_its_history_and_is_upgraded_by_its_next_commit():
    expected = {int(version): value for version, value in json.loads((FIXTURE / "expected.json").read_text()).items()}
    newest = max(expected)
    name = unique_name("format1")
    s3, bucket = upload(name)
    record = s3.get_object(Bucket=bucket, Key=f"{name}/log/{newest:020}")["Body"].read()
    assert json.loads(record)["format"] == 1, "the fixture is format 1"

    conn = connect(name)
    assert rows(conn) == expected[newest]
    assert integrity(conn) == ["ok"]
    for version, value in expected.items():
        past = connect(name, version=version)
        assert rows(past) == value, version
        past.close()

    # The next commit writes format 2: its record, a checkpoint of the whole map, the head.
    conn.execute("INSERT INTO t(v) VALUES ('written by format 2')")
    record = s3.get_object(Bucket=bucket, Key=f"{name}/log/{newest + 1:020}")["Body"].read()
    header = json.loads(record.split(b"\n", 1)[0])
    assert header["format"] == 2 and header["base_version"] == newest + 1, header
    head = json.loads(s3.get_object(Bucket=bucket, Key=f"{name}/head")["Body"].read())
    assert head == {"format": 2, "version": newest + 1}
    now = expected[newest] + [[rows(conn)[-1][0], "written by format 2"]]
    assert rows(conn) == now
    conn.close()

    # A cold reader (a new client, with caches of its own) reads the upgraded database and its
    # format-1 past.
    fresh = connect(name, endpoint=os.environ["AWS_ENDPOINT_URL"].replace("127.0.0.1", "localhost"))
    assert rows(fresh) == now
    assert integrity(fresh) == ["ok"]
    fresh.execute("UPDATE t SET v = 'patched' WHERE id = 1")
    assert rows(fresh)[0] == [1, "patched"]
    fresh.close()
    oldest = connect(name, version=min(expected))
    assert rows(oldest) == expected[min(expected)]
    oldest.close()


def test_a_kill_during_the_upgrade_commit_leaves_a_committed_state():
    import random
    import signal
    import time

    from s3vfs_util import start_worker

    expected = {int(version): value for version, value in json.loads((FIXTURE / "expected.json").read_text()).items()}
    newest = max(expected)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for round_number in range(4):
        name = unique_name("format1-kill")
        upload(name)
        child = start_worker("batches", name)
        started = child.stdout.readline()
        assert started.startswith('{"started_after"'), started
        delay = rng.uniform(0.0, 0.4)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        out = child.stdout.read()
        committed = {json.loads(line)["committed"] for line in out.splitlines() if '"committed"' in line}
        detail = f"seed {seed}, round {round_number}, delay {delay:.2f} s, committed {sorted(committed)}"

        conn = connect(name)
        assert integrity(conn) == ["ok"], detail
        assert rows(conn) == expected[newest], detail
        has_rows = conn.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'rows'").fetchone()[0]
        counts = dict(conn.execute("SELECT batch, count(*) FROM rows GROUP BY batch").fetchall()) if has_rows else {}
        assert all(count == 200 for count in counts.values()), f"partial batches {counts}; {detail}"
        assert committed <= set(counts), f"acknowledged batches lost; {detail}"
        # Upgraded or not, the database takes the next commit.
        conn.execute("INSERT INTO t(v) VALUES ('after the kill')")
        assert rows(conn)[-1][1] == "after the kill"
        conn.close()
