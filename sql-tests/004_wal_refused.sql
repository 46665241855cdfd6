-- WAL needs shared memory between every connection, which hosts sharing a bucket do not
-- have: s3vfs refuses it with a message, and the journal mode stays what it was.
.echo on
.load @LIB@
.open 'file:t004.db?vfs=s3vfs'
PRAGMA journal_mode;
PRAGMA journal_mode = WAL;
PRAGMA journal_mode;
SELECT s3vfs_last_error();
-- Any spelling, with or without the schema name.
PRAGMA journal_mode = 'wal';
PRAGMA main.journal_mode = wal;
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
-- synchronous=OFF would skip the sync that commits: refused too; the setting stays.
PRAGMA synchronous;
PRAGMA synchronous = OFF;
PRAGMA synchronous = 0;
PRAGMA synchronous;
PRAGMA synchronous = NORMAL;
PRAGMA synchronous;
INSERT INTO t VALUES (4);
-- Other pragmas are left to SQLite.
PRAGMA cache_size = 100;
PRAGMA cache_size;
.open 'file:t004.db?vfs=s3vfs'
PRAGMA journal_mode;
SELECT group_concat(x) FROM t;
PRAGMA integrity_check;
