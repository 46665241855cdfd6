-- Migrating between layouts with s3vfs_copy, and exporting a past version: a database of the
-- Python package's layout (sqlite-s3vfs) becomes a versioned one and back, byte for byte.
.echo on
.load @LIB@
.open 'file:t016_python.db?vfs=s3vfs&layout=sqlite-s3vfs&block_size=4096'
CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO notes(body) SELECT 'note ' || value FROM generate_series(1, 2000);
-- Into the versioned layout (atomic commits, safe concurrent writers, history).
SELECT s3vfs_copy('main', 'file:t016_native.db?bucket=@BUCKET@') = (SELECT page_count * page_size FROM pragma_page_count, pragma_page_size) AS bytes;
SELECT s3vfs_serialize('file:t016_native.db?bucket=@BUCKET@') = s3vfs_serialize('main') AS identical;
-- Change the versioned copy, then take it back out to a new name of the Python layout.
.open 'file:t016_native.db?vfs=s3vfs'
DELETE FROM notes WHERE id > 1000;
SELECT s3vfs_copy('main', 'file:t016_python_again.db?bucket=@BUCKET@&layout=sqlite-s3vfs&block_size=4096') > 0 AS copied;
.open 'file:t016_python_again.db?vfs=s3vfs&layout=sqlite-s3vfs&block_size=4096'
PRAGMA integrity_check;
SELECT count(*), max(id) FROM notes;
-- The layout without atomic commits is only ever written into an empty name.
SELECT s3vfs_copy('file:t016_native.db?bucket=@BUCKET@', 'main');
SELECT s3vfs_copy('file:t016_native.db?bucket=@BUCKET@', 'main', 'replace');
-- A past version of the versioned database, exported as a plain file.
SELECT s3vfs_serialize('file:t016_native.db?bucket=@BUCKET@&version=1', '@TMP@/v1.db') > 0 AS exported;
.open @TMP@/v1.db
SELECT count(*) FROM notes;
-- A past version is read-only as a target.
SELECT s3vfs_deserialize('file:t016_native.db?bucket=@BUCKET@&version=1', '@TMP@/v1.db', 'replace');
-- A connection opened at a past version exports that version.
.open 'file:t016_native.db?vfs=s3vfs&version=1'
SELECT s3vfs_serialize('main', '@TMP@/v1-again.db') > 0 AS exported;
SELECT readfile('@TMP@/v1-again.db') = readfile('@TMP@/v1.db') AS same_version;
SELECT s3vfs_deserialize('main', '@TMP@/v1.db', 'replace');
