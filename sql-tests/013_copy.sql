-- s3vfs_copy(source, target [, 'replace']): the newest version of one database becomes the
-- content of another in one commit, streamed block by block (no local file).
.echo on
.load @LIB@
.open 'file:t013_source.db?vfs=s3vfs&block_size=4096'
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO t(v) SELECT 'value ' || value FROM generate_series(1, 3000);
CREATE INDEX t_v ON t(v);
-- Into a new database with another block size; the result is the size in bytes.
SELECT s3vfs_copy('main', 'file:t013_copy.db?bucket=@BUCKET@&block_size=16384') = (SELECT page_count * page_size FROM pragma_page_count, pragma_page_size) AS bytes;
SELECT s3vfs_serialize('file:t013_copy.db?bucket=@BUCKET@') = s3vfs_serialize('main') AS identical;
-- The copy is a database of its own: changing it leaves the source as it was.
ATTACH 'file:t013_copy.db?vfs=s3vfs' AS copy;
DELETE FROM copy.t WHERE id > 10;
SELECT (SELECT count(*) FROM main.t) AS source_rows, (SELECT count(*) FROM copy.t) AS copy_rows;
PRAGMA copy.integrity_check;
DETACH copy;
-- A target with content is protected unless 'replace' is given.
SELECT s3vfs_copy('main', 'file:t013_copy.db?bucket=@BUCKET@');
SELECT s3vfs_copy('main', 'file:t013_copy.db?bucket=@BUCKET@', 'replace') > 0 AS replaced;
SELECT s3vfs_serialize('file:t013_copy.db?bucket=@BUCKET@') = s3vfs_serialize('main') AS identical;
-- Mistakes.
SELECT s3vfs_copy('main', 'main', 'replace');
SELECT s3vfs_copy('file:t013_nothing.db?bucket=@BUCKET@', 'file:t013_other.db?bucket=@BUCKET@');
SELECT s3vfs_copy('main', 'file:t013_tiny.db?bucket=@BUCKET@&block_size=512');
SELECT s3vfs_copy('main', 'file:t013_copy.db?bucket=@BUCKET@&block_size=512', 'replace');
