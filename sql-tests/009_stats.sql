-- s3vfs_stats(): the version grows by exactly one per commit and not otherwise; each commit
-- is exactly one conditional PUT; with staleness=0 each read transaction checks for newer
-- versions with exactly one GET (of the next commit record) and no LIST. Snapshots of the counters go to an in-memory database, so
-- that recording them does not touch the s3vfs database.
.echo on
.load @LIB@
.open 'file:t009.db?vfs=s3vfs'
ATTACH ':memory:' AS mem;
CREATE VIEW mem.now AS SELECT
  json_extract(s, '$.version') AS version,
  json_extract(s, '$.database.requests.put_if_absent') AS cput,
  json_extract(s, '$.database.requests.get') AS get,
  json_extract(s, '$.database.requests.list') AS list,
  json_extract(s, '$.database.requests.errors') AS errors
  FROM (SELECT s3vfs_stats() AS s);
CREATE TABLE mem.snap(step INTEGER PRIMARY KEY, what TEXT, version, cput, get, list, errors);
CREATE VIEW mem.delta AS SELECT b.what, b.version - a.version AS versions, b.cput - a.cput AS conditional_puts, b.get - a.get AS gets, b.list - a.list AS lists, b.errors AS errors
  FROM mem.snap a JOIN mem.snap b ON b.step = a.step + 1 ORDER BY b.step;
-- A database that was never written is at version 0.
SELECT version, errors FROM mem.now;
-- The shape of the report.
SELECT key, type FROM json_each(s3vfs_stats()) ORDER BY key;
SELECT key, type FROM json_each(s3vfs_stats(), '$.database') ORDER BY key;
SELECT key, type FROM json_each(s3vfs_stats(), '$.database.requests') ORDER BY key;
SELECT key, type FROM json_each(s3vfs_stats(), '$.database.cache') ORDER BY key;
SELECT key, type FROM json_each(s3vfs_stats(), '$.process') ORDER BY key;
SELECT json_extract(s3vfs_stats(), '$.version') = json_extract(s3vfs_stats(), '$.database.version') AS same_version;
SELECT json_extract(s3vfs_stats(), '$.database.prefix') AS prefix, json_extract(s3vfs_stats(), '$.database.bucket') AS bucket, json_extract(s3vfs_stats(), '$.database.block_size') AS block_size;
SELECT json_extract(s3vfs_stats(), '$.database.cache.budget') AS default_cache_budget;
INSERT INTO mem.snap(what, version, cput, get, list, errors) SELECT 'start', * FROM mem.now;
CREATE TABLE t(x);
INSERT INTO mem.snap(what, version, cput, get, list, errors) SELECT 'create table', * FROM mem.now;
INSERT INTO t VALUES (1);
INSERT INTO mem.snap(what, version, cput, get, list, errors) SELECT 'insert', * FROM mem.now;
INSERT INTO t VALUES (2);
INSERT INTO mem.snap(what, version, cput, get, list, errors) SELECT 'insert', * FROM mem.now;
BEGIN;
INSERT INTO t VALUES (3);
INSERT INTO t VALUES (4);
UPDATE t SET x = x * 10;
COMMIT;
INSERT INTO mem.snap(what, version, cput, get, list, errors) SELECT 'transaction of 3 statements', * FROM mem.now;
SELECT sum(x) FROM t;
INSERT INTO mem.snap(what, version, cput, get, list, errors) SELECT 'read', * FROM mem.now;
SELECT count(*) FROM t;
SELECT max(x) FROM t;
INSERT INTO mem.snap(what, version, cput, get, list, errors) SELECT 'two reads', * FROM mem.now;
BEGIN;
SELECT count(*) FROM t;
SELECT max(x) FROM t;
COMMIT;
INSERT INTO mem.snap(what, version, cput, get, list, errors) SELECT 'read transaction', * FROM mem.now;
BEGIN;
DELETE FROM t;
ROLLBACK;
INSERT INTO mem.snap(what, version, cput, get, list, errors) SELECT 'rolled back', * FROM mem.now;
DELETE FROM t WHERE x = 10;
INSERT INTO mem.snap(what, version, cput, get, list, errors) SELECT 'delete', * FROM mem.now;
SELECT * FROM mem.delta;
SELECT version FROM mem.now;
-- Another handle (a fresh open of the same URI) reports the same version.
.open 'file:t009.db?vfs=s3vfs'
SELECT count(*), json_extract(s3vfs_stats(), '$.version') AS version FROM t;
SELECT json_extract(s3vfs_stats(), '$.database.requests.put_if_absent') AS conditional_puts, json_extract(s3vfs_stats(), '$.database.requests.errors') AS errors;
-- The process counters cover every database of the process.
SELECT json_extract(s3vfs_stats(), '$.process.requests') >= json_extract(s3vfs_stats(), '$.database.requests.get') + json_extract(s3vfs_stats(), '$.database.requests.list') AS process_covers_database;
-- staleness: a read within the window skips the check.
.open 'file:t009.db?vfs=s3vfs&staleness=60s&cache_size=1M'
SELECT json_extract(s3vfs_stats(), '$.database.cache.budget') AS cache_budget;
SELECT count(*) FROM t;
ATTACH ':memory:' AS mem;
CREATE TABLE mem.l AS SELECT json_extract(s3vfs_stats(), '$.database.requests.get') + json_extract(s3vfs_stats(), '$.database.requests.list') AS checks;
SELECT count(*) FROM t;
SELECT count(*) FROM t;
SELECT json_extract(s3vfs_stats(), '$.database.requests.get') + json_extract(s3vfs_stats(), '$.database.requests.list') - checks AS checks FROM mem.l;
-- Not an s3vfs database: no database section, and the version is null.
SELECT json_extract(s3vfs_stats('mem'), '$.database') IS NULL AS no_database, json_extract(s3vfs_stats('mem'), '$.version') IS NULL AS no_version;
SELECT json_extract(s3vfs_stats('nosuchschema'), '$.database') IS NULL AS no_database;
