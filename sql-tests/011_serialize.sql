-- s3vfs_serialize(source [, path [, 'replace']]): the newest committed version of an s3vfs
-- database as a plain SQLite file, returned as a BLOB or streamed to a local file.
.echo on
.load @LIB@
.open 'file:t011.db?vfs=s3vfs&block_size=4096'
PRAGMA page_size = 1024;
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, data BLOB);
CREATE INDEX t_name ON t(name);
INSERT INTO t(name, data) SELECT 'row ' || value, zeroblob(value % 700) FROM generate_series(1, 800);
DELETE FROM t WHERE id % 4 = 0;
-- As a BLOB: exactly the database's pages.
SELECT length(s3vfs_serialize('main')) = (SELECT page_count * page_size FROM pragma_page_count, pragma_page_size) AS whole_file;
SELECT substr(s3vfs_serialize('main'), 1, 16) = CAST('SQLite format 3' || char(0) AS BLOB) AS has_header;
-- The same database named by a URI instead of a schema.
SELECT s3vfs_serialize('file:t011.db?bucket=@BUCKET@') = s3vfs_serialize('main') AS same_by_uri;
-- To a file: the number of bytes written; the file is a plain SQLite database.
SELECT s3vfs_serialize('main', '@TMP@/out.db') = (SELECT page_count * page_size FROM pragma_page_count, pragma_page_size) AS bytes_written;
SELECT readfile('@TMP@/out.db') = s3vfs_serialize('main') AS file_matches_blob;
-- An existing file is kept unless 'replace' is given.
SELECT s3vfs_serialize('main', '@TMP@/out.db');
INSERT INTO t(name) VALUES ('after the first export');
SELECT s3vfs_serialize('main', '@TMP@/out.db', 'replace') > 0 AS replaced;
.open @TMP@/out.db
PRAGMA integrity_check;
SELECT count(*), max(name) FILTER (WHERE name LIKE 'after%') FROM t;
.open 'file:t011.db?vfs=s3vfs'
-- Mistakes: each names what to fix.
SELECT s3vfs_serialize('nosuchschema');
SELECT s3vfs_serialize('file:t011-never-written.db?bucket=@BUCKET@');
SELECT s3vfs_serialize('file:t011.db?bucket=@BUCKET@&colour=red');
SELECT s3vfs_serialize('main', '@TMP@/out.db', 'overwrite');
SELECT s3vfs_serialize('main', '@TMP@/no/such/dir/out.db');
SELECT s3vfs_serialize(42);
SELECT s3vfs_last_error();
