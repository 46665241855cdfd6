#!/usr/bin/env python3
"""Self-test of the local S3 test server (scripts/s3-server.sh) with boto3.

Usage:  eval "$(scripts/s3-server.sh env)"; python3 scripts/check-s3-server.py
          [--rounds N] [--racers N] [--bench]

Checks the S3 features s3vfs relies on, then races --racers threads and
--racers processes doing a conditional PUT (If-None-Match: *) on one fresh key,
--rounds times each: exactly one must win, the rest must get 412, and the
winner's GET right after its PUT must return the whole body.
"""
import argparse
import multiprocessing as mp
import os
import sys
import threading
import time
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

BUCKET = os.environ.get("S3VFS_TEST_BUCKET") or os.environ.get("S3VFS_BUCKET") or "s3vfs-test"
BODY_SIZE = 64 * 1024


def client(**kw):
    cfg = Config(retries={"max_attempts": 1}, max_pool_connections=4)
    return boto3.client("s3", region_name=os.environ.get("AWS_REGION", "us-east-1"), config=cfg, **kw)


def code(e):
    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def expect_error(fn, codes, status):
    try:
        fn()
    except ClientError as e:
        c, s = code(e)
        assert c in codes and s == status, f"expected {codes}/{status}, got {c}/{s}"
        return
    raise AssertionError(f"expected {codes}/{status}, call succeeded")


def check_features(s3):
    p = f"features-{uuid.uuid4().hex}/"
    s3.put_object(Bucket=BUCKET, Key=p + "k", Body=b"0123456789", IfNoneMatch="*")
    expect_error(lambda: s3.put_object(Bucket=BUCKET, Key=p + "k", Body=b"x", IfNoneMatch="*"),
                 {"PreconditionFailed"}, 412)
    etag = s3.head_object(Bucket=BUCKET, Key=p + "k")["ETag"]
    s3.put_object(Bucket=BUCKET, Key=p + "k", Body=b"abcdefghij", IfMatch=etag)
    expect_error(lambda: s3.put_object(Bucket=BUCKET, Key=p + "k", Body=b"x", IfMatch=etag),
                 {"PreconditionFailed"}, 412)
    r = s3.get_object(Bucket=BUCKET, Key=p + "k", Range="bytes=2-5")
    assert r["Body"].read() == b"cdef" and r["ContentRange"] == "bytes 2-5/10", r
    expect_error(lambda: s3.get_object(Bucket=BUCKET, Key=p + "missing"), {"NoSuchKey"}, 404)
    keys = [f"{p}d/{i:03d}" for i in range(5)] + [p + "d+x=y,z@(1)!ü"]
    for k in keys:
        s3.put_object(Bucket=BUCKET, Key=k, Body=k.encode())
    assert s3.get_object(Bucket=BUCKET, Key=keys[-1])["Body"].read() == keys[-1].encode()
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix=p + "d/", StartAfter=p + "d/001")
    assert [o["Key"] for o in r["Contents"]] == keys[2:5], r
    r = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys + [p + "k"]]})
    assert len(r["Deleted"]) == len(keys) + 1 and not r.get("Errors"), r
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=p)["KeyCount"] == 0


def check_bad_credentials():
    key_id = os.environ.get("AWS_ACCESS_KEY_ID", "")
    if key_id == "test":
        return "skipped (server runs without auth)"
    wrong_secret = client(aws_access_key_id=key_id, aws_secret_access_key="x" * 40)
    expect_error(lambda: wrong_secret.list_objects_v2(Bucket=BUCKET), {"SignatureDoesNotMatch"}, 403)
    wrong_id = client(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x" * 40)
    expect_error(lambda: wrong_id.put_object(Bucket=BUCKET, Key="bad-creds", Body=b"x"),
                 {"InvalidAccessKeyId"}, 403)
    return "ok"


def race_once(s3, key, me):
    """One racer's conditional PUT; the winner reads its object back at once."""
    body = (f"{me}:".encode() * BODY_SIZE)[:BODY_SIZE]
    try:
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, IfNoneMatch="*")
    except ClientError as e:
        return "412" if code(e) == ("PreconditionFailed", 412) else "error %s/%s" % code(e)
    got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return "win" if got == body else f"bad read: {len(got)} bytes"


def racer(me, keys, barrier, out):
    s3 = client()
    for rnd, key in enumerate(keys):
        barrier.wait(timeout=120)
        out.put((rnd, me, race_once(s3, key, me)))


def race(kind, racers, rounds):
    tag = uuid.uuid4().hex
    keys = [f"race-{kind}-{tag}/{i}" for i in range(rounds)]
    if kind == "threads":
        import queue
        barrier, out = threading.Barrier(racers), queue.Queue()
        workers = [threading.Thread(target=racer, args=(i, keys, barrier, out)) for i in range(racers)]
    else:
        ctx = mp.get_context("spawn")
        barrier, out = ctx.Barrier(racers), ctx.Queue()
        workers = [ctx.Process(target=racer, args=(i, keys, barrier, out)) for i in range(racers)]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    results = [out.get(timeout=300) for _ in range(racers * rounds)]
    elapsed = time.monotonic() - t0
    for w in workers:
        w.join()
    by_round = {}
    for rnd, _, res in results:
        by_round.setdefault(rnd, []).append(res)
    bad = {r: v for r, v in by_round.items() if sorted(v) != ["412"] * (racers - 1) + ["win"]}
    assert not bad, f"{kind}: {len(bad)} bad rounds, e.g. {next(iter(bad.items()))}"
    client().delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys]})
    return elapsed


def bench(seconds=3.0, threads=(1, 4)):
    s3 = client()
    key = f"bench-{uuid.uuid4().hex}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x" * 100)
    for n in threads:
        count, stop = [0] * n, time.monotonic() + seconds

        def run(i):
            c = client()
            while time.monotonic() < stop:
                c.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                count[i] += 1

        ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        print(f"bench: {n} thread(s), small GETs: {sum(count) / seconds:.0f} req/s")
    s3.delete_object(Bucket=BUCKET, Key=key)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--racers", type=int, default=16)
    ap.add_argument("--bench", action="store_true", help="also measure small-GET throughput")
    a = ap.parse_args()
    s3 = client()
    passed, failed = 0, 0
    checks = [
        ("features", lambda: check_features(s3) or "ok"),
        ("bad credentials", check_bad_credentials),
        ("race threads", lambda: "%d rounds in %.1f s" % (a.rounds, race("threads", a.racers, a.rounds))),
        ("race processes", lambda: "%d rounds in %.1f s" % (a.rounds, race("processes", a.racers, a.rounds))),
    ]
    for name, fn in checks:
        try:
            print(f"{name}: {fn()}", flush=True)
            passed += 1
        except Exception as e:  # noqa: BLE001 - report every check
            print(f"{name}: FAILED: {e!r}", flush=True)
            failed += 1
    if a.bench:
        bench()
    print(f"check-s3-server: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
