-- Mistakes in the URI or the environment fail the open with a message from s3vfs that names
-- the problem (SQLite itself only says "unable to open database file"); the message is
-- also kept for s3vfs_last_error().
.echo on
.load @LIB@
-- An unknown parameter (a typo of block_size).
.open 'file:t008.db?vfs=s3vfs&blok_size=4096'
SELECT s3vfs_last_error();
-- Malformed sizes.
.open 'file:t008.db?vfs=s3vfs&block_size=3000'
.open 'file:t008.db?vfs=s3vfs&block_size=12q'
.open 'file:t008.db?vfs=s3vfs&block_size=256'
.open 'file:t008.db?vfs=s3vfs&block_size=32M'
.open 'file:t008.db?vfs=s3vfs&cache_size=lots'
.open 'file:t008.db?vfs=s3vfs&cache_size=-1'
-- Other malformed values.
.open 'file:t008.db?vfs=s3vfs&staleness=soon'
.open 'file:t008.db?vfs=s3vfs&path_style=maybe'
.open 'file:t008.db?vfs=s3vfs&endpoint=localhost:9000'
.open 'file:t008.db?vfs=s3vfs&bucket=a/b'
.open 'file:t008.db?vfs=s3vfs&compression=lz4'
.open 'file:t008.db?vfs=s3vfs&compression=zstd:30'
.open 'file:t008.db?vfs=s3vfs&encryption=aes'
.open 'file:t008.db?vfs=s3vfs&encryption=aes-256-gcm'
.open 'file:t008.db?vfs=s3vfs&interior_index=maybe'
-- An empty path: SQLite would make it a private temporary database that never reaches the
-- bucket, so the open fails instead.
.open 'file:?vfs=s3vfs'
SELECT s3vfs_last_error();
-- A parameter given twice.
.open 'file:t008.db?vfs=s3vfs&bucket=a&bucket=b'
-- Durations and sizes out of range.
.open 'file:t008.db?vfs=s3vfs&staleness=1e30s'
.open 'file:t008.db?vfs=s3vfs&staleness=86401s'
.open 'file:t008.db?vfs=s3vfs&cache_size=2048G'
.open 'file:t008.db?vfs=s3vfs&gc_margin=90d'
.open 'file:t008.db?vfs=s3vfs&gc_margin=0s'
-- Credentials written into an endpoint are refused, and never printed.
.open 'file:t008.db?vfs=s3vfs&endpoint=http://user:secret@127.0.0.1:1'
SELECT s3vfs_last_error();
-- An endpoint where nothing listens: one line naming it, within seconds.
.open 'file:t008.db?vfs=s3vfs&endpoint=http://127.0.0.1:1'
-- A bucket that does not exist.
.open 'file:t008.db?vfs=s3vfs&bucket=s3vfs-sqltests-no-such-bucket'
SELECT s3vfs_last_error();
-- Nothing was created by any of those.
.open 'file:t008.db?vfs=s3vfs&mode=ro'
-- A block_size that conflicts with the one the database was created with.
.open 'file:t008.db?vfs=s3vfs&block_size=4096'
CREATE TABLE t(x);
INSERT INTO t VALUES ('created with 4096-byte blocks');
.open 'file:t008.db?vfs=s3vfs&block_size=8192'
.open 'file:t008.db?vfs=s3vfs&block_size=64k'
-- The same block size, in any spelling, or none, is fine.
.open 'file:t008.db?vfs=s3vfs&block_size=4k'
SELECT x FROM t;
.open 'file:t008.db?vfs=s3vfs'
SELECT x, json_extract(s3vfs_stats(), '$.database.block_size') FROM t;
-- mode=ro on a database that does not exist; mode=rw does not create one either.
.open 'file:t008_absent.db?vfs=s3vfs&mode=ro'
SELECT s3vfs_last_error();
.open 'file:t008_absent.db?vfs=s3vfs&mode=rw'
-- mode=ro on a database that exists reads, and refuses writes.
.open 'file:t008.db?vfs=s3vfs&mode=ro'
SELECT x FROM t;
INSERT INTO t VALUES ('refused');
-- Wrong credentials (another process, with a wrong secret key).
.system AWS_SECRET_ACCESS_KEY=wrong-secret @SQLITE@ -batch -init /dev/null -cmd '.load @LIB@' -cmd ".open 'file:t008.db?vfs=s3vfs'" -cmd 'SELECT count(*) FROM t' :memory: </dev/null
-- ATTACH reports the same problems.
.open 'file:t008.db?vfs=s3vfs'
ATTACH 'file:t008_other.db?vfs=s3vfs&blok_size=4096' AS other;
ATTACH 'file:t008.db?vfs=s3vfs&block_size=512' AS again;
SELECT name FROM pragma_database_list ORDER BY seq;
-- None of this left the database damaged.
.open 'file:t008.db?vfs=s3vfs'
SELECT x FROM t;
PRAGMA integrity_check;
