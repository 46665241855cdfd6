-- ROLLBACK restores the data and publishes nothing: the version stays where it was.
.echo on
.load @LIB@
.open 'file:t007.db?vfs=s3vfs'
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);
INSERT INTO t(b) SELECT printf('orig %d', value) FROM generate_series(1, 100);
ATTACH ':memory:' AS mem;
CREATE TABLE mem.v AS SELECT json_extract(s3vfs_stats(), '$.version') AS version;
SELECT count(*), sum(length(b)), min(b), max(b) FROM t;
-- An explicit transaction, rolled back.
BEGIN;
DELETE FROM t WHERE a < 50;
UPDATE t SET b = 'changed' WHERE a >= 50;
INSERT INTO t(b) VALUES ('new');
SELECT count(*), max(b) FROM t;
ROLLBACK;
SELECT count(*), sum(length(b)), min(b), max(b) FROM t;
SELECT json_extract(s3vfs_stats(), '$.version') - version AS new_versions FROM mem.v;
-- Savepoints: the inner part is undone, the outer part commits.
BEGIN;
INSERT INTO t(b) VALUES ('kept');
SAVEPOINT inner;
DELETE FROM t;
ROLLBACK TO inner;
RELEASE inner;
COMMIT;
SELECT count(*), max(b) FROM t;
DELETE FROM t WHERE b = 'kept';
SELECT json_extract(s3vfs_stats(), '$.version') - version AS new_versions FROM mem.v;
UPDATE mem.v SET version = json_extract(s3vfs_stats(), '$.version');
-- A tiny page cache makes SQLite write (spill) uncommitted pages into the database file in
-- the middle of the transaction; ROLLBACK must still restore everything.
PRAGMA cache_size = 5;
BEGIN;
INSERT INTO t(b) SELECT printf('big %d %s', value, hex(zeroblob(200))) FROM generate_series(1, 5000);
UPDATE t SET b = 'changed' WHERE a <= 100;
SELECT count(*) FROM t;
ROLLBACK;
SELECT count(*), sum(length(b)), min(b), max(b) FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.version') - version AS new_versions FROM mem.v;
.open 'file:t007.db?vfs=s3vfs'
SELECT count(*), sum(length(b)), min(b), max(b) FROM t;
PRAGMA integrity_check;
-- The same with a small s3vfs cache_size, so that s3vfs itself uploads the spilled blocks
-- early (they stay invisible: no commit record names them).
.open 'file:t007_spill.db?vfs=s3vfs&block_size=4096&cache_size=64k'
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);
INSERT INTO t(b) SELECT printf('orig %d', value) FROM generate_series(1, 100);
ATTACH ':memory:' AS mem;
CREATE TABLE mem.v AS SELECT json_extract(s3vfs_stats(), '$.version') AS version;
PRAGMA cache_size = 5;
BEGIN;
INSERT INTO t(b) SELECT printf('big %d %s', value, hex(zeroblob(200))) FROM generate_series(1, 5000);
UPDATE t SET b = 'changed' WHERE a <= 100;
SELECT count(*) FROM t;
ROLLBACK;
SELECT count(*), sum(length(b)), min(b), max(b) FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.version') - version AS new_versions FROM mem.v;
.open 'file:t007_spill.db?vfs=s3vfs'
SELECT count(*), sum(length(b)), min(b), max(b) FROM t;
PRAGMA integrity_check;
-- After all that, a normal commit still works.
INSERT INTO t(b) VALUES ('after');
.open 'file:t007_spill.db?vfs=s3vfs'
SELECT count(*), max(a), (SELECT b FROM t ORDER BY a DESC LIMIT 1) FROM t;
