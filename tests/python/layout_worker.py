"""Worker processes of the sqlite-s3vfs layout tests: `python layout_worker.py COMMAND ARGS...`.

`crash WRITER NAME BLOCK_SIZE`: starts a large transaction with WRITER (`package` for the
Python package sqlite-s3vfs, `s3vfs` for s3vfs with layout=sqlite-s3vfs) and kills itself with
SIGKILL as soon as the journal's first block exists and some database block has changed: a
crash in the middle of writing the database, after the journal was written. Prints one JSON
line before the commit; exits 0 only if the commit finished before the kill.
"""
import json
import os
import signal
import sys
import threading
import time

from layout_util import bucket, etags, package_connect, s3vfs_connect, value
from s3vfs_util import load


def watch(name, before):
    journal_header = f"{name}-journal/0000000000"
    while True:
        if list(bucket().objects.filter(Prefix=journal_header)) and etags(name + "/") != before:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.002)


def cmd_crash(writer, name, block_size):
    block_size = int(block_size)
    if writer == "s3vfs":
        load()
        # A small cache makes s3vfs upload database blocks as SQLite writes them.
        conn = s3vfs_connect(name, block_size, cache_size="64k")
    else:
        conn = package_connect(name, block_size)
    before = etags(name + "/")
    print(json.dumps({"blocks_before": len(before)}), flush=True)
    conn.execute("BEGIN")
    conn.execute("UPDATE t SET v = randomblob(length(v))")
    conn.execute("INSERT INTO t(id, v) SELECT id + 100000, randomblob(2000) FROM t")
    threading.Thread(target=watch, args=(name, before), daemon=True).start()
    conn.execute("COMMIT")
    print(json.dumps({"committed": True}), flush=True)


if __name__ == "__main__":
    {"crash": cmd_crash}[sys.argv[1]](*sys.argv[2:])
