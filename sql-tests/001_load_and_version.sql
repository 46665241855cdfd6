-- Loading the extension with no entry point: SQLite derives sqlite3_svfs_init from the
-- file name, which s3vfs exports.
.echo on
.load @LIB@
SELECT s3vfs_version() LIKE 's3vfs %.%.%' AS versioned, s3vfs_version() GLOB 's3vfs [0-9]*' AS numeric;
-- What a bug report needs (the commit and date vary; their shape does not).
SELECT s3vfs_debug() GLOB 's3vfs [0-9]*.*
commit: *
built: [0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]
target: *-*
profile: *
SQLite: 3.*' AS debug_report;
SELECT s3vfs_debug() LIKE '%SQLite: ' || sqlite_version() AS reports_the_sqlite_that_loaded_it;
-- The SQL functions, with their argument counts.
SELECT name, narg FROM pragma_function_list WHERE name LIKE 's3vfs%' ORDER BY name, narg;
-- Nothing failed yet.
SELECT s3vfs_last_error() IS NULL AS no_error_yet;
-- The VFS is registered under the name s3vfs; the database name is its key prefix.
.open 'file:t001_a.db?vfs=s3vfs'
.vfsname
SELECT name, file FROM pragma_database_list WHERE name = 'main';
-- Loading again is harmless, with or without the explicit entry point.
.load @LIB@
.load @LIB@ sqlite3_s3vfs_init
-- Connections opened after loading get the functions too.
.open ':memory:'
SELECT s3vfs_version() = (SELECT s3vfs_version()) AS same;
SELECT json_extract(s3vfs_stats(), '$.version') IS NULL AS not_an_s3vfs_db, json_type(s3vfs_stats(), '$.process.requests') AS requests_type;
.open 'file:t001_a.db?vfs=s3vfs'
CREATE TABLE t(x);
INSERT INTO t VALUES ('loaded');
SELECT x FROM t;
SELECT json_extract(s3vfs_stats(), '$.database.prefix') AS prefix, json_extract(s3vfs_stats(), '$.database.bucket') AS bucket;
