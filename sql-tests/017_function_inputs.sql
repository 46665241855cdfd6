-- Bad input to the SQL functions gets a clear error and changes nothing; every documented
-- arity works; s3vfs_last_error() holds the last error of this thread since the last open of
-- an s3vfs database or call of an s3vfs function.
.echo on
.load @LIB@
.open 'file:t017.db?vfs=s3vfs&block_size=4096&gc_margin=1s'
CREATE TABLE t(x);
INSERT INTO t VALUES ('one');
INSERT INTO t VALUES ('two');
SELECT json_extract(s3vfs_stats(), '$.version');
-- An input shorter than a SQLite header is no database, 'replace' or not.
SELECT s3vfs_deserialize('main', X'', 'replace');
SELECT s3vfs_deserialize('main', X'53514C697465', 'replace');
.system : > @TMP@/empty.db
SELECT s3vfs_deserialize('main', '@TMP@/empty.db', 'replace');
SELECT s3vfs_deserialize('file:t017-copy.db', X'');
SELECT group_concat(x) FROM t;
-- A version is a whole number.
SELECT s3vfs_restore('main', 1.9);
SELECT s3vfs_restore('main', 'one');
SELECT s3vfs_restore('main', NULL);
SELECT s3vfs_restore('main', 1.0) AS restored_as;
SELECT group_concat(x) FROM t;
-- Functions that commit on their own are refused inside a transaction; it goes on.
BEGIN;
INSERT INTO t VALUES ('three');
SELECT s3vfs_restore('main', 2);
SELECT s3vfs_deserialize('main', s3vfs_serialize('main'), 'replace');
SELECT s3vfs_copy('main', 'file:t017-copy.db');
COMMIT;
SELECT group_concat(x) FROM t;
SELECT json_extract(s3vfs_stats(), '$.version');
-- The collector: every documented arity; a database that does not exist is an error, and
-- nothing is written for it.
SELECT json_extract(s3vfs_gc(), '$.keep');
SELECT json_extract(s3vfs_gc('main'), '$.keep');
SELECT json_extract(s3vfs_gc('main', 100), '$.keep');
SELECT s3vfs_gc('file:t017-never-created.db');
SELECT json_array_length(s3vfs_versions('file:t017-never-created.db')) AS versions;
SELECT s3vfs_serialize('file:t017-never-created.db');
-- s3vfs_last_error(): the error of the last failing call, cleared by the next call of a
-- function that works on a database and succeeds, and by an open; the functions that only
-- report (s3vfs_version, s3vfs_stats, s3vfs_last_error) leave it.
SELECT s3vfs_restore('main', 0);
SELECT s3vfs_last_error();
SELECT s3vfs_version() IS NOT NULL, s3vfs_stats() IS NOT NULL;
SELECT s3vfs_last_error() IS NOT NULL AS still_there;
SELECT json_array_length(s3vfs_versions()) > 0;
SELECT s3vfs_last_error() IS NULL AS cleared_by_a_call;
SELECT s3vfs_restore('main', 0);
.open 'file:t017.db?vfs=s3vfs'
SELECT s3vfs_last_error() IS NULL AS cleared_by_an_open;
PRAGMA journal_mode = WAL;
SELECT s3vfs_last_error() LIKE '%journal_mode=WAL is not available%' AS pragma_notice;
SELECT group_concat(x) FROM t;
PRAGMA integrity_check;
