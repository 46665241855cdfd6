-- Start-up scripts run unchanged. WAL needs memory shared by every connection, which hosts
-- sharing a bucket do not have: PRAGMA journal_mode=WAL answers with the journal mode in
-- force, as SQLite answers on any VFS without shared memory, and says why in
-- s3vfs_last_error() and sqlite3_log. Every synchronous level works, and every commit is in
-- the bucket when COMMIT returns, whatever the level.
.echo on
.load @LIB@
.open 'file:t004.db?vfs=s3vfs'
PRAGMA journal_mode;
PRAGMA journal_mode = WAL;
PRAGMA journal_mode;
SELECT s3vfs_last_error();
-- Any spelling (SQLite reads a prefix: 'w' is WAL), with or without the schema name.
PRAGMA journal_mode = 'wal';
PRAGMA main.journal_mode = wal;
PRAGMA journal_mode = w;
PRAGMA journal_mode;
-- The database is still usable.
CREATE TABLE t(x);
INSERT INTO t VALUES (1), (2);
SELECT count(*) FROM t;
-- From another rollback mode, the mode is kept as well.
PRAGMA journal_mode = TRUNCATE;
PRAGMA journal_mode = WAL;
PRAGMA journal_mode;
INSERT INTO t VALUES (3);
-- With locking_mode=EXCLUSIVE, where SQLite itself would switch to WAL, too.
PRAGMA locking_mode = EXCLUSIVE;
PRAGMA journal_mode = WAL;
INSERT INTO t VALUES (4);
PRAGMA journal_mode;
-- In exclusive locking, SQLite moves the change counter in the first commit only; every
-- commit is published all the same.
INSERT INTO t VALUES (40);
.system @SQLITE@ -batch -init /dev/null -cmd '.load @LIB@' -cmd ".open 'file:t004.db?vfs=s3vfs'" -cmd 'SELECT group_concat(x) FROM t' :memory: </dev/null
PRAGMA locking_mode = NORMAL;
-- The WAL pragmas are harmless: SQLite's answers for a database not in WAL mode.
PRAGMA wal_checkpoint;
PRAGMA wal_checkpoint(TRUNCATE);
PRAGMA wal_autocheckpoint = 100;
PRAGMA journal_size_limit = 1000;
-- synchronous: every level is taken and reported as set.
PRAGMA synchronous;
PRAGMA synchronous = OFF;
PRAGMA synchronous;
INSERT INTO t VALUES (5);
-- Committed under synchronous=OFF: another process reads it right away.
.system @SQLITE@ -batch -init /dev/null -cmd '.load @LIB@' -cmd ".open 'file:t004.db?vfs=s3vfs'" -cmd 'SELECT group_concat(x) FROM t' :memory: </dev/null
BEGIN;
INSERT INTO t VALUES (6);
UPDATE t SET x = x * 10 WHERE x = 1;
COMMIT;
.system @SQLITE@ -batch -init /dev/null -cmd '.load @LIB@' -cmd ".open 'file:t004.db?vfs=s3vfs'" -cmd 'SELECT group_concat(x) FROM t' :memory: </dev/null
-- And rolled back under synchronous=OFF: nothing of it reaches the bucket.
BEGIN;
INSERT INTO t VALUES (7);
ROLLBACK;
PRAGMA synchronous = 0;
PRAGMA synchronous;
PRAGMA synchronous = NORMAL;
PRAGMA synchronous;
PRAGMA synchronous = EXTRA;
PRAGMA synchronous;
INSERT INTO t VALUES (8);
-- Other pragmas are left to SQLite.
PRAGMA cache_size = 100;
PRAGMA cache_size;
.open 'file:t004.db?vfs=s3vfs'
PRAGMA journal_mode;
SELECT group_concat(x) FROM t;
PRAGMA integrity_check;
