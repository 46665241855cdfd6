-- Page sizes from 512 to 65536 bytes, with 4 KiB blocks (a 64 KiB page spans 16 blocks)
-- and the default 64 KiB blocks (a block holds up to 128 pages of 512 bytes): write enough
-- rows for many pages, change scattered rows in a later transaction, reopen, check.
.echo on
.load @LIB@

-- page_size=512, block_size=4096
.open 'file:t005_p512_b4k.db?vfs=s3vfs&block_size=4096'
PRAGMA page_size = 512;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c BLOB);
CREATE INDEX t_b ON t(b);
INSERT INTO t(b, c) SELECT printf('%06d', value), randomblob(150 + value % 200) FROM generate_series(1, 1500);
CREATE TABLE sums AS SELECT count(*) AS n, sum(length(c)) AS bytes, sum(unicode(substr(c, 1 + a % 100, 1))) AS probe FROM t;
.open 'file:t005_p512_b4k.db?vfs=s3vfs'
PRAGMA page_size;
SELECT page_count >= 300 * 1024 / page_size AS many_pages FROM pragma_page_count, pragma_page_size;
SELECT count(*) = n, sum(length(c)) = bytes, sum(unicode(substr(c, 1 + a % 100, 1))) = probe FROM t, sums;
UPDATE t SET c = zeroblob(length(c)), b = 'z' || b WHERE a % 97 = 0;
.open 'file:t005_p512_b4k.db?vfs=s3vfs'
SELECT count(*), sum(b LIKE 'z%'), sum(c = zeroblob(length(c))) FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.database.block_size') AS block_size, json_extract(s3vfs_stats(), '$.database.size') = page_count * page_size AS size_matches FROM pragma_page_count, pragma_page_size;

-- page_size=512, default block size
.open 'file:t005_p512_bdefault.db?vfs=s3vfs'
PRAGMA page_size = 512;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c BLOB);
CREATE INDEX t_b ON t(b);
INSERT INTO t(b, c) SELECT printf('%06d', value), randomblob(150 + value % 200) FROM generate_series(1, 1500);
CREATE TABLE sums AS SELECT count(*) AS n, sum(length(c)) AS bytes, sum(unicode(substr(c, 1 + a % 100, 1))) AS probe FROM t;
.open 'file:t005_p512_bdefault.db?vfs=s3vfs'
PRAGMA page_size;
SELECT page_count >= 300 * 1024 / page_size AS many_pages FROM pragma_page_count, pragma_page_size;
SELECT count(*) = n, sum(length(c)) = bytes, sum(unicode(substr(c, 1 + a % 100, 1))) = probe FROM t, sums;
UPDATE t SET c = zeroblob(length(c)), b = 'z' || b WHERE a % 97 = 0;
.open 'file:t005_p512_bdefault.db?vfs=s3vfs'
SELECT count(*), sum(b LIKE 'z%'), sum(c = zeroblob(length(c))) FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.database.block_size') AS block_size, json_extract(s3vfs_stats(), '$.database.size') = page_count * page_size AS size_matches FROM pragma_page_count, pragma_page_size;

-- page_size=4096, block_size=4096
.open 'file:t005_p4096_b4k.db?vfs=s3vfs&block_size=4096'
PRAGMA page_size = 4096;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c BLOB);
CREATE INDEX t_b ON t(b);
INSERT INTO t(b, c) SELECT printf('%06d', value), randomblob(150 + value % 200) FROM generate_series(1, 1500);
CREATE TABLE sums AS SELECT count(*) AS n, sum(length(c)) AS bytes, sum(unicode(substr(c, 1 + a % 100, 1))) AS probe FROM t;
.open 'file:t005_p4096_b4k.db?vfs=s3vfs'
PRAGMA page_size;
SELECT page_count >= 300 * 1024 / page_size AS many_pages FROM pragma_page_count, pragma_page_size;
SELECT count(*) = n, sum(length(c)) = bytes, sum(unicode(substr(c, 1 + a % 100, 1))) = probe FROM t, sums;
UPDATE t SET c = zeroblob(length(c)), b = 'z' || b WHERE a % 97 = 0;
.open 'file:t005_p4096_b4k.db?vfs=s3vfs'
SELECT count(*), sum(b LIKE 'z%'), sum(c = zeroblob(length(c))) FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.database.block_size') AS block_size, json_extract(s3vfs_stats(), '$.database.size') = page_count * page_size AS size_matches FROM pragma_page_count, pragma_page_size;

-- page_size=4096, default block size
.open 'file:t005_p4096_bdefault.db?vfs=s3vfs'
PRAGMA page_size = 4096;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c BLOB);
CREATE INDEX t_b ON t(b);
INSERT INTO t(b, c) SELECT printf('%06d', value), randomblob(150 + value % 200) FROM generate_series(1, 1500);
CREATE TABLE sums AS SELECT count(*) AS n, sum(length(c)) AS bytes, sum(unicode(substr(c, 1 + a % 100, 1))) AS probe FROM t;
.open 'file:t005_p4096_bdefault.db?vfs=s3vfs'
PRAGMA page_size;
SELECT page_count >= 300 * 1024 / page_size AS many_pages FROM pragma_page_count, pragma_page_size;
SELECT count(*) = n, sum(length(c)) = bytes, sum(unicode(substr(c, 1 + a % 100, 1))) = probe FROM t, sums;
UPDATE t SET c = zeroblob(length(c)), b = 'z' || b WHERE a % 97 = 0;
.open 'file:t005_p4096_bdefault.db?vfs=s3vfs'
SELECT count(*), sum(b LIKE 'z%'), sum(c = zeroblob(length(c))) FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.database.block_size') AS block_size, json_extract(s3vfs_stats(), '$.database.size') = page_count * page_size AS size_matches FROM pragma_page_count, pragma_page_size;

-- page_size=65536, block_size=4096
.open 'file:t005_p65536_b4k.db?vfs=s3vfs&block_size=4096'
PRAGMA page_size = 65536;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c BLOB);
CREATE INDEX t_b ON t(b);
INSERT INTO t(b, c) SELECT printf('%06d', value), randomblob(150 + value % 200) FROM generate_series(1, 1500);
CREATE TABLE sums AS SELECT count(*) AS n, sum(length(c)) AS bytes, sum(unicode(substr(c, 1 + a % 100, 1))) AS probe FROM t;
.open 'file:t005_p65536_b4k.db?vfs=s3vfs'
PRAGMA page_size;
SELECT page_count >= 300 * 1024 / page_size AS many_pages FROM pragma_page_count, pragma_page_size;
SELECT count(*) = n, sum(length(c)) = bytes, sum(unicode(substr(c, 1 + a % 100, 1))) = probe FROM t, sums;
UPDATE t SET c = zeroblob(length(c)), b = 'z' || b WHERE a % 97 = 0;
.open 'file:t005_p65536_b4k.db?vfs=s3vfs'
SELECT count(*), sum(b LIKE 'z%'), sum(c = zeroblob(length(c))) FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.database.block_size') AS block_size, json_extract(s3vfs_stats(), '$.database.size') = page_count * page_size AS size_matches FROM pragma_page_count, pragma_page_size;

-- page_size=65536, default block size
.open 'file:t005_p65536_bdefault.db?vfs=s3vfs'
PRAGMA page_size = 65536;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c BLOB);
CREATE INDEX t_b ON t(b);
INSERT INTO t(b, c) SELECT printf('%06d', value), randomblob(150 + value % 200) FROM generate_series(1, 1500);
CREATE TABLE sums AS SELECT count(*) AS n, sum(length(c)) AS bytes, sum(unicode(substr(c, 1 + a % 100, 1))) AS probe FROM t;
.open 'file:t005_p65536_bdefault.db?vfs=s3vfs'
PRAGMA page_size;
SELECT page_count >= 300 * 1024 / page_size AS many_pages FROM pragma_page_count, pragma_page_size;
SELECT count(*) = n, sum(length(c)) = bytes, sum(unicode(substr(c, 1 + a % 100, 1))) = probe FROM t, sums;
UPDATE t SET c = zeroblob(length(c)), b = 'z' || b WHERE a % 97 = 0;
.open 'file:t005_p65536_bdefault.db?vfs=s3vfs'
SELECT count(*), sum(b LIKE 'z%'), sum(c = zeroblob(length(c))) FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.database.block_size') AS block_size, json_extract(s3vfs_stats(), '$.database.size') = page_count * page_size AS size_matches FROM pragma_page_count, pragma_page_size;
