"""Helpers of the sqlite-s3vfs layout tests: the Python package sqlite-s3vfs (PyPI, APSW +
boto3) and s3vfs with layout=sqlite-s3vfs on the same objects of the local S3 server.

Imported by the tests and by layout_worker.py, so it must not import pytest.
"""
import os
import random

import apsw
import boto3
import sqlite_s3vfs

from s3vfs_util import connect, integrity

# page_size:block_size pairs the tests run with.
SIZES = [(4096, 4096), (1024, 4096), (65536, 65536)]

_vfs = {}


def bucket():
    s3 = boto3.resource("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    return s3.Bucket(os.environ["S3VFS_BUCKET"])


def package_connect(name, block_size):
    """A connection of the Python package sqlite-s3vfs to database `name`."""
    if block_size not in _vfs:
        _vfs[block_size] = sqlite_s3vfs.S3VFS(bucket=bucket(), block_size=block_size)
    conn = apsw.Connection(name, vfs=_vfs[block_size].name)
    conn.set_busy_timeout(10_000)
    return conn


def s3vfs_connect(name, block_size, **params):
    """A connection of s3vfs with layout=sqlite-s3vfs to database `name`."""
    return connect(name, layout="sqlite-s3vfs", block_size=block_size, **params)


def rows(conn):
    return {row_id: bytes(value) for row_id, value in conn.execute("SELECT id, v FROM t ORDER BY id")}


def value(seed, size=None):
    generator = random.Random(seed)
    return generator.randbytes(size if size is not None else generator.randint(1, 3000))


def keys(prefix):
    return sorted(obj.key for obj in bucket().objects.filter(Prefix=prefix))


def etags(prefix):
    return {obj.key: obj.e_tag for obj in bucket().objects.filter(Prefix=prefix)}


def check(conn, expected):
    assert integrity(conn) == ["ok"]
    assert rows(conn) == expected
