-- Two s3vfs databases in one connection: ATTACH a second one, use both, in separate and in
-- shared transactions; s3vfs_stats(schema) reports each database on its own.
.echo on
.load @LIB@
.open 'file:t010_main.db?vfs=s3vfs'
CREATE TABLE m(x);
INSERT INTO m VALUES (1), (2);
ATTACH 'file:t010_other.db?vfs=s3vfs&block_size=4096' AS aux;
CREATE TABLE aux.o(y);
INSERT INTO aux.o VALUES (10), (20), (30);
SELECT json_extract(s3vfs_stats(), '$.database.prefix') AS main_prefix, json_extract(s3vfs_stats('main'), '$.database.prefix') AS main_prefix_again, json_extract(s3vfs_stats('aux'), '$.database.prefix') AS aux_prefix;
SELECT json_extract(s3vfs_stats('main'), '$.database.block_size') AS main_block_size, json_extract(s3vfs_stats('aux'), '$.database.block_size') AS aux_block_size;
SELECT json_extract(s3vfs_stats('main'), '$.version') AS main_version, json_extract(s3vfs_stats('aux'), '$.version') AS aux_version;
-- A write to one database commits only that one.
INSERT INTO aux.o VALUES (40);
SELECT json_extract(s3vfs_stats('main'), '$.version') AS main_version, json_extract(s3vfs_stats('aux'), '$.version') AS aux_version;
-- A transaction over both commits each of them.
BEGIN;
INSERT INTO m VALUES (3);
INSERT INTO aux.o VALUES (50);
COMMIT;
SELECT json_extract(s3vfs_stats('main'), '$.version') AS main_version, json_extract(s3vfs_stats('aux'), '$.version') AS aux_version;
-- ... and rolls both back.
BEGIN;
DELETE FROM m;
DELETE FROM aux.o;
ROLLBACK;
SELECT json_extract(s3vfs_stats('main'), '$.version') AS main_version, json_extract(s3vfs_stats('aux'), '$.version') AS aux_version;
-- Queries across both.
SELECT (SELECT count(*) FROM m) AS m_rows, (SELECT count(*) FROM aux.o) AS o_rows, (SELECT sum(x) FROM m) + (SELECT sum(y) FROM aux.o) AS total;
INSERT INTO m SELECT y FROM aux.o WHERE y > 30;
SELECT group_concat(x) FROM (SELECT x FROM m ORDER BY x);
PRAGMA aux.integrity_check;
-- Detach, and attach again under another name: the data is there.
DETACH aux;
SELECT json_extract(s3vfs_stats('aux'), '$.database') IS NULL AS aux_gone;
ATTACH 'file:t010_other.db?vfs=s3vfs' AS again;
SELECT group_concat(y) FROM (SELECT y FROM again.o ORDER BY y);
SELECT json_extract(s3vfs_stats('again'), '$.database.prefix') AS prefix, json_extract(s3vfs_stats('again'), '$.version') AS version;
-- The same database attached twice shares one state in the process.
ATTACH 'file:t010_main.db?vfs=s3vfs' AS twin;
SELECT json_extract(s3vfs_stats('twin'), '$.version') = json_extract(s3vfs_stats('main'), '$.version') AS same_version;
INSERT INTO twin.m VALUES (100);
SELECT max(x) FROM main.m;
SELECT json_extract(s3vfs_stats('twin'), '$.version') = json_extract(s3vfs_stats('main'), '$.version') AS same_version;
-- Each database reads back on its own after reopening.
.open 'file:t010_other.db?vfs=s3vfs'
SELECT count(*), sum(y) FROM o;
PRAGMA integrity_check;
.open 'file:t010_main.db?vfs=s3vfs'
SELECT count(*), sum(x) FROM m;
PRAGMA integrity_check;
