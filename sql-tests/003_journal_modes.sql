-- Every rollback journal mode commits atomically: set it, write, roll back a transaction
-- (not in OFF mode, where SQLite cannot roll back), reopen, read back and check.
-- The journal itself is a local temp file; the mode is per connection, so a reopened
-- handle is back to DELETE.
.echo on
.load @LIB@

-- DELETE
.open 'file:t003_delete.db?vfs=s3vfs'
PRAGMA journal_mode = DELETE;
PRAGMA journal_mode;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);
INSERT INTO t(b) SELECT printf('row %d %s', value, hex(zeroblob(100))) FROM generate_series(1, 500);
BEGIN;
UPDATE t SET b = 'x' || b WHERE a % 3 = 0;
DELETE FROM t WHERE a > 450;
COMMIT;
BEGIN;
DELETE FROM t;
INSERT INTO t(b) VALUES ('rolled back');
ROLLBACK;
SELECT count(*) AS after_rollback FROM t;
SELECT json_extract(s3vfs_stats(), '$.version') AS version;
.open 'file:t003_delete.db?vfs=s3vfs'
PRAGMA journal_mode;
SELECT count(*), sum(length(b)), sum(b LIKE 'x%') FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.version') AS version;
-- Switching the mode on the reopened handle and writing again works too.
PRAGMA journal_mode = DELETE;
INSERT INTO t(b) VALUES ('again');
.open 'file:t003_delete.db?vfs=s3vfs'
SELECT count(*), max(b) FILTER (WHERE b NOT LIKE 'x%' AND b NOT LIKE 'row%') FROM t;

-- TRUNCATE
.open 'file:t003_truncate.db?vfs=s3vfs'
PRAGMA journal_mode = TRUNCATE;
PRAGMA journal_mode;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);
INSERT INTO t(b) SELECT printf('row %d %s', value, hex(zeroblob(100))) FROM generate_series(1, 500);
BEGIN;
UPDATE t SET b = 'x' || b WHERE a % 3 = 0;
DELETE FROM t WHERE a > 450;
COMMIT;
BEGIN;
DELETE FROM t;
INSERT INTO t(b) VALUES ('rolled back');
ROLLBACK;
SELECT count(*) AS after_rollback FROM t;
SELECT json_extract(s3vfs_stats(), '$.version') AS version;
.open 'file:t003_truncate.db?vfs=s3vfs'
PRAGMA journal_mode;
SELECT count(*), sum(length(b)), sum(b LIKE 'x%') FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.version') AS version;
-- Switching the mode on the reopened handle and writing again works too.
PRAGMA journal_mode = TRUNCATE;
INSERT INTO t(b) VALUES ('again');
.open 'file:t003_truncate.db?vfs=s3vfs'
SELECT count(*), max(b) FILTER (WHERE b NOT LIKE 'x%' AND b NOT LIKE 'row%') FROM t;

-- PERSIST
.open 'file:t003_persist.db?vfs=s3vfs'
PRAGMA journal_mode = PERSIST;
PRAGMA journal_mode;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);
INSERT INTO t(b) SELECT printf('row %d %s', value, hex(zeroblob(100))) FROM generate_series(1, 500);
BEGIN;
UPDATE t SET b = 'x' || b WHERE a % 3 = 0;
DELETE FROM t WHERE a > 450;
COMMIT;
BEGIN;
DELETE FROM t;
INSERT INTO t(b) VALUES ('rolled back');
ROLLBACK;
SELECT count(*) AS after_rollback FROM t;
SELECT json_extract(s3vfs_stats(), '$.version') AS version;
.open 'file:t003_persist.db?vfs=s3vfs'
PRAGMA journal_mode;
SELECT count(*), sum(length(b)), sum(b LIKE 'x%') FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.version') AS version;
-- Switching the mode on the reopened handle and writing again works too.
PRAGMA journal_mode = PERSIST;
INSERT INTO t(b) VALUES ('again');
.open 'file:t003_persist.db?vfs=s3vfs'
SELECT count(*), max(b) FILTER (WHERE b NOT LIKE 'x%' AND b NOT LIKE 'row%') FROM t;

-- MEMORY
.open 'file:t003_memory.db?vfs=s3vfs'
PRAGMA journal_mode = MEMORY;
PRAGMA journal_mode;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);
INSERT INTO t(b) SELECT printf('row %d %s', value, hex(zeroblob(100))) FROM generate_series(1, 500);
BEGIN;
UPDATE t SET b = 'x' || b WHERE a % 3 = 0;
DELETE FROM t WHERE a > 450;
COMMIT;
BEGIN;
DELETE FROM t;
INSERT INTO t(b) VALUES ('rolled back');
ROLLBACK;
SELECT count(*) AS after_rollback FROM t;
SELECT json_extract(s3vfs_stats(), '$.version') AS version;
.open 'file:t003_memory.db?vfs=s3vfs'
PRAGMA journal_mode;
SELECT count(*), sum(length(b)), sum(b LIKE 'x%') FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.version') AS version;
-- Switching the mode on the reopened handle and writing again works too.
PRAGMA journal_mode = MEMORY;
INSERT INTO t(b) VALUES ('again');
.open 'file:t003_memory.db?vfs=s3vfs'
SELECT count(*), max(b) FILTER (WHERE b NOT LIKE 'x%' AND b NOT LIKE 'row%') FROM t;

-- OFF
.open 'file:t003_off.db?vfs=s3vfs'
PRAGMA journal_mode = OFF;
PRAGMA journal_mode;
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);
INSERT INTO t(b) SELECT printf('row %d %s', value, hex(zeroblob(100))) FROM generate_series(1, 500);
BEGIN;
UPDATE t SET b = 'x' || b WHERE a % 3 = 0;
DELETE FROM t WHERE a > 450;
COMMIT;
SELECT json_extract(s3vfs_stats(), '$.version') AS version;
.open 'file:t003_off.db?vfs=s3vfs'
PRAGMA journal_mode;
SELECT count(*), sum(length(b)), sum(b LIKE 'x%') FROM t;
PRAGMA integrity_check;
SELECT json_extract(s3vfs_stats(), '$.version') AS version;
-- Switching the mode on the reopened handle and writing again works too.
PRAGMA journal_mode = OFF;
INSERT INTO t(b) VALUES ('again');
.open 'file:t003_off.db?vfs=s3vfs'
SELECT count(*), max(b) FILTER (WHERE b NOT LIKE 'x%' AND b NOT LIKE 'row%') FROM t;
