-- s3vfs_deserialize(target, blob_or_path [, 'replace']): a plain SQLite file becomes the
-- content of an s3vfs database in one commit; bad input is refused and changes nothing.
.echo on
.load @LIB@
-- A local database with an index, blobs and free pages.
.open @TMP@/source.db
PRAGMA page_size = 4096;
CREATE TABLE items(id INTEGER PRIMARY KEY, label TEXT UNIQUE, payload BLOB);
INSERT INTO items(label, payload) SELECT 'item-' || value, randomblob(value % 900) FROM generate_series(1, 1500);
DELETE FROM items WHERE id % 3 = 0;
SELECT freelist_count > 0 AS has_free_pages FROM pragma_freelist_count;
.open :memory:
-- From a file path; the result is the size in bytes.
SELECT s3vfs_deserialize('file:t012.db?bucket=@BUCKET@', '@TMP@/source.db') = length(readfile('@TMP@/source.db')) AS bytes;
-- Serializing it again gives the file back byte for byte.
SELECT s3vfs_serialize('file:t012.db?bucket=@BUCKET@') = readfile('@TMP@/source.db') AS identical;
.open 'file:t012.db?vfs=s3vfs'
PRAGMA integrity_check;
SELECT count(*), sum(length(payload)) = (SELECT sum(value % 900) FROM generate_series(1, 1500) WHERE value % 3 != 0) FROM items;
SELECT json_extract(s3vfs_stats(), '$.version') AS version;
-- A database that has content is protected ...
SELECT s3vfs_deserialize('main', '@TMP@/source.db');
-- ... unless 'replace' is given. A smaller database leaves nothing of the larger one.
.open @TMP@/small.db
CREATE TABLE small(x);
INSERT INTO small VALUES (1), (2), (3);
.open 'file:t012.db?vfs=s3vfs'
SELECT s3vfs_deserialize('main', '@TMP@/small.db', 'replace') AS bytes;
SELECT name FROM sqlite_schema;
SELECT sum(x) FROM small;
PRAGMA integrity_check;
SELECT s3vfs_serialize('main') = readfile('@TMP@/small.db') AS identical;
SELECT json_extract(s3vfs_stats(), '$.version') AS version;
-- From a BLOB, into a new database.
SELECT s3vfs_deserialize('file:t012-blob.db?bucket=@BUCKET@', readfile('@TMP@/source.db')) = length(readfile('@TMP@/source.db')) AS bytes;
SELECT s3vfs_serialize('file:t012-blob.db?bucket=@BUCKET@') = readfile('@TMP@/source.db') AS identical;
-- Refused input; the version stays 2 throughout.
SELECT s3vfs_deserialize('main', CAST('just some text, not a database' AS BLOB), 'replace');
SELECT s3vfs_deserialize('main', substr(readfile('@TMP@/source.db'), 1, 10000), 'replace');
SELECT s3vfs_deserialize('main', substr(readfile('@TMP@/source.db'), 1, 8192), 'replace');
SELECT s3vfs_deserialize('main', substr(readfile('@TMP@/source.db'), 1, 40), 'replace');
SELECT s3vfs_deserialize('main', '@TMP@/missing.db', 'replace');
SELECT s3vfs_deserialize('main', 1234, 'replace');
.open @TMP@/wal.db
PRAGMA journal_mode = WAL;
CREATE TABLE w(x);
.open 'file:t012.db?vfs=s3vfs'
SELECT s3vfs_deserialize('main', '@TMP@/wal.db', 'replace');
SELECT writefile('@TMP@/hot.db', readfile('@TMP@/small.db')) > 0, writefile('@TMP@/hot.db-journal', x'd9d505f920a163d700000000') > 0;
SELECT s3vfs_deserialize('main', '@TMP@/hot.db', 'replace');
.open @TMP@/big-pages.db
PRAGMA page_size = 65536;
CREATE TABLE b(x);
.open 'file:t012-small-blocks.db?vfs=s3vfs&block_size=4096'
SELECT s3vfs_deserialize('main', '@TMP@/big-pages.db');
.open 'file:t012.db?vfs=s3vfs'
SELECT json_extract(s3vfs_stats(), '$.version') AS version;
SELECT sum(x) FROM small;
