-- VACUUM rewrites the database smaller: after deleting most rows the page count drops, and
-- so must the stored size that s3vfs_stats() reports (page_count * page_size).
.echo on
.load @LIB@
.open 'file:t006.db?vfs=s3vfs&block_size=4096'
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);
INSERT INTO t(b) SELECT printf('%06d-%s', value, hex(zeroblob(100))) FROM generate_series(1, 3000);
ATTACH ':memory:' AS mem;
CREATE TABLE mem.before AS SELECT page_count AS pages, json_extract(s3vfs_stats(), '$.database.size') AS size FROM pragma_page_count;
SELECT size = pages * 4096 AS size_matches FROM mem.before;
DELETE FROM t WHERE a % 10 != 0;
SELECT page_count = (SELECT pages FROM mem.before) AS same_pages, freelist_count > 0 AS has_free_pages FROM pragma_page_count, pragma_freelist_count;
VACUUM;
SELECT page_count < (SELECT pages FROM mem.before) / 5 AS fewer_pages, freelist_count FROM pragma_page_count, pragma_freelist_count;
SELECT json_extract(s3vfs_stats(), '$.database.size') < (SELECT size FROM mem.before) / 5 AS stored_smaller, json_extract(s3vfs_stats(), '$.database.size') = page_count * 4096 AS size_matches FROM pragma_page_count;
SELECT count(*), sum(length(b)) FROM t;
PRAGMA integrity_check;
-- The same, seen by a fresh handle.
.open 'file:t006.db?vfs=s3vfs'
SELECT json_extract(s3vfs_stats(), '$.database.size') = page_count * page_size AS size_matches FROM pragma_page_count, pragma_page_size;
SELECT count(*), sum(length(b)) FROM t;
-- VACUUM to a smaller and then a larger page size (the block size stays 4096).
PRAGMA page_size = 1024;
VACUUM;
PRAGMA page_size;
SELECT json_extract(s3vfs_stats(), '$.database.size') = page_count * page_size AS size_matches FROM pragma_page_count, pragma_page_size;
.open 'file:t006.db?vfs=s3vfs'
PRAGMA page_size;
PRAGMA integrity_check;
SELECT count(*), sum(length(b)) FROM t;
PRAGMA page_size = 65536;
VACUUM;
.open 'file:t006.db?vfs=s3vfs'
PRAGMA page_size;
PRAGMA integrity_check;
SELECT count(*), sum(length(b)) FROM t;
SELECT json_extract(s3vfs_stats(), '$.database.block_size') AS block_size, json_extract(s3vfs_stats(), '$.database.size') = page_count * page_size AS size_matches FROM pragma_page_count, pragma_page_size;
-- VACUUM INTO another s3vfs database.
VACUUM INTO 'file:t006_copy.db?vfs=s3vfs';
.open 'file:t006_copy.db?vfs=s3vfs'
PRAGMA page_size;
SELECT count(*), sum(length(b)) FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.database.block_size') AS block_size, json_extract(s3vfs_stats(), '$.database.size') = page_count * page_size AS size_matches FROM pragma_page_count, pragma_page_size;
-- auto_vacuum=FULL shrinks the file at every commit that frees pages.
.open 'file:t006_auto.db?vfs=s3vfs&block_size=4096'
PRAGMA auto_vacuum = FULL;
CREATE TABLE keep(x);
INSERT INTO keep VALUES ('kept');
CREATE TABLE big(x);
INSERT INTO big SELECT hex(zeroblob(1000)) FROM generate_series(1, 200);
SELECT page_count > 100 AS big_file, json_extract(s3vfs_stats(), '$.database.size') = page_count * page_size AS size_matches FROM pragma_page_count, pragma_page_size;
DROP TABLE big;
SELECT page_count < 10 AS small_file, json_extract(s3vfs_stats(), '$.database.size') = page_count * page_size AS size_matches FROM pragma_page_count, pragma_page_size;
.open 'file:t006_auto.db?vfs=s3vfs'
SELECT x FROM keep;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.database.size') = page_count * page_size AS size_matches FROM pragma_page_count, pragma_page_size;
