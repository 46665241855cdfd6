"""B-tree prefetch: once point lookups reach a second interior page of one level, the rest of
that level is fetched in one batch, so that later lookups skip a round trip; a level over
`prefetch_size` is left alone. Each reader is a fresh process against the local S3 server."""
import os
import random

import apsw

from s3vfs_util import load, run_worker, unique_name

ROWS = 20_000


def make_database(tmp_path):
    """A three-level table: 1024-byte pages of four 200-byte rows each, so that about 50
    interior pages sit between the root and the leaves, deserialized with 8 KiB blocks."""
    source = tmp_path / "deep.db"
    local = apsw.Connection(str(source))
    local.execute("PRAGMA page_size = 1024")
    local.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, val BLOB NOT NULL)")
    local.execute(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
        "INSERT INTO t SELECT i, randomblob(200) FROM c",
        (ROWS,),
    )
    local.close()
    name = unique_name("prefetch")
    load()
    conn = apsw.Connection(":memory:")
    uri = f"file:{name}?bucket={os.environ['S3VFS_BUCKET']}&block_size=8k"
    conn.execute("SELECT s3vfs_deserialize(?, ?)", (uri, str(source))).fetchall()
    conn.close()
    return name


def test_lookups_skip_the_level_that_prefetch_fetched(tmp_path):
    name = make_database(tmp_path)
    keys = ",".join(str(key) for key in random.Random(3).sample(range(1, ROWS + 1), 40))
    with_prefetch = run_worker("lookups", name, "16M", keys)
    without = run_worker("lookups", name, "0", keys)
    assert with_prefetch["prefetch"]["batches"] == 1, with_prefetch
    assert with_prefetch["prefetch"]["blocks"] >= 30, with_prefetch
    assert without["prefetch"] == {"batches": 0, "blocks": 0, "over_bound": 0}, without
    # After the lookup that called for it, a lookup fetches at most the leaf's block itself:
    # the interior level is cached or on its way.
    # After the lookup that called for it, a lookup fetches the leaf's block at most (two
    # blocks now and then: sequential read-ahead when two lookups land in adjacent blocks);
    # without it, most lookups also fetch an interior page's block, one round trip more.
    assert sum(count >= 2 for count in with_prefetch["misses"][2:]) <= 2, with_prefetch
    assert sum(count >= 2 for count in without["misses"][2:]) >= 15, without
    # Every block of the level is fetched once: a lookup waits for a block on its way.
    extra = with_prefetch["requests"] - without["requests"]
    assert extra <= with_prefetch["prefetch"]["blocks"], (with_prefetch, without)


def test_a_level_over_the_bound_is_not_fetched(tmp_path):
    name = make_database(tmp_path)
    keys = ",".join(str(key) for key in random.Random(4).sample(range(1, ROWS + 1), 10))
    bounded = run_worker("lookups", name, "64k", keys)
    assert bounded["prefetch"]["batches"] == 0, bounded
    assert bounded["prefetch"]["over_bound"] == 1, bounded
