"""B-tree prefetch: a cold process loads the checkpoint's interior-page index with its first
block, so that a point lookup fetches only its leaf; without the index, once point lookups
reach a second interior page of one level, the rest of that level is fetched in one batch,
and a level over `prefetch_size` is left alone. Each reader is a fresh process against the
local S3 server."""
import os
import random

import apsw

from s3vfs_util import connect, load, run_worker, stats, unique_name
from s3vfs_worker import table_digest

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
    with_prefetch = run_worker("lookups", name, "prefetch_size=16M&interior_index=0", keys)
    without = run_worker("lookups", name, "prefetch_size=0&interior_index=0", keys)
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
    bounded = run_worker("lookups", name, "prefetch_size=64k&interior_index=0", keys)
    assert bounded["prefetch"]["batches"] == 0, bounded
    assert bounded["prefetch"]["over_bound"] == 1, bounded


def test_a_cold_lookup_takes_interior_pages_from_the_index(tmp_path):
    name = make_database(tmp_path)
    keys = ",".join(str(key) for key in random.Random(5).sample(range(1, ROWS + 1), 40))
    indexed = run_worker("lookups", name, "prefetch_size=0", keys)
    plain = run_worker("lookups", name, "prefetch_size=0&interior_index=0", keys)
    interior = indexed["interior"]
    assert interior["loads"] == 1 and interior["pages"] >= 40, indexed
    assert interior["bytes"] == interior["pages"] * 1024, indexed
    assert plain["interior"]["loads"] == 0, plain
    # From the first lookup on, a lookup fetches its leaf's block at most (now and then two:
    # read-ahead when two lookups land in adjacent blocks); the index served the level above
    # whenever its block was not cached already (the root shares block 0 with page 1).
    assert indexed["misses"][0] <= 2, indexed
    assert sum(count >= 2 for count in indexed["misses"][1:]) <= 2, indexed
    assert interior["hits"] >= 20, indexed
    assert sum(count >= 2 for count in plain["misses"][1:]) >= 15, plain
    assert indexed["requests"] < plain["requests"], (indexed, plain)
    assert indexed["integrity"] == ["ok"] and plain["integrity"] == ["ok"]


def test_the_index_never_serves_a_page_that_changed(tmp_path):
    """Rows change, move and split pages after the index was written: a fresh process reads
    every page right, whether the index or a block serves it, before and after the next
    checkpoint writes a new index."""
    name = make_database(tmp_path)
    conn = connect(name)
    rng = random.Random(6)
    for round in range(110):
        conn.execute("BEGIN")
        for key in rng.sample(range(1, ROWS + 1), 20):
            conn.execute("UPDATE t SET val = randomblob(200) WHERE id = ?", (key,))
        conn.execute("DELETE FROM t WHERE id = ?", (rng.randrange(1, ROWS + 1),))
        conn.execute("INSERT INTO t VALUES (?, randomblob(300))", (ROWS + 1 + round,))
        conn.execute("COMMIT")
        if round in (5, 109):
            expected = table_digest(conn, "t", "val")
            for params in ("", "interior_index=0"):
                reader = run_worker("scan", name, params)
                assert reader["integrity"] == ["ok"], reader
                assert reader["digest"] == expected, (round, params)
            assert reader["interior"]["loads"] == 0
    assert stats(conn)["database"]["version"] > 100
    conn.close()
    indexed = run_worker("scan", name, "")
    assert indexed["interior"]["loads"] == 1 and indexed["interior"]["hits"] > 0, indexed
