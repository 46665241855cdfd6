-- layout=: an unknown layout is refused and names the known ones; a sqlite-s3vfs-layout
-- database is written and read back in place, reported as such; the versioned layout
-- refuses to open it, and the layout refuses a block_size its objects contradict.
.load @LIB@
.open 'file:t014.db?vfs=s3vfs&layout=flat'
SELECT s3vfs_last_error();
.open 'file:t014.db?vfs=s3vfs&layout=sqlite-s3vfs&block_size=1024'
PRAGMA page_size=1024;
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO t(v) SELECT printf('row %d', value) FROM generate_series(1, 300);
SELECT count(*), sum(length(v)) FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.database.layout'), json_extract(s3vfs_stats(), '$.database.size') % 1024;
PRAGMA journal_mode=MEMORY;
.open 'file:t014.db?vfs=s3vfs'
SELECT s3vfs_last_error();
.open 'file:t014.db?vfs=s3vfs&layout=sqlite-s3vfs&block_size=512'
SELECT s3vfs_last_error();
.open 'file:t014.db?vfs=s3vfs&layout=sqlite-s3vfs&block_size=1024'
SELECT count(*) FROM t;
