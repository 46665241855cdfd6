-- History: list versions, open a past one read-only (version=, as_of=), restore it as a new
-- commit, and run the collector (nothing is old enough to collect within the default margin).
.echo on
.load @LIB@
.open 'file:t015.db?vfs=s3vfs'
CREATE TABLE t(x);
INSERT INTO t VALUES (1);
INSERT INTO t VALUES (2);
INSERT INTO t VALUES (3);
SELECT value ->> 'version' AS version, value ->> 'size' AS size, value ->> 'blocks_changed' AS blocks_changed FROM json_each(s3vfs_versions());
SELECT count(*) FROM json_each(s3vfs_versions('main')) WHERE value ->> 'time' LIKE '____-__-__T__:__:__.___Z';
-- Version 2 (one row), attached beside the current one.
ATTACH 'file:t015.db?vfs=s3vfs&version=2' AS past;
SELECT (SELECT group_concat(x) FROM past.t) AS past, (SELECT group_concat(x) FROM main.t) AS now;
INSERT INTO past.t VALUES (99);
SELECT s3vfs_last_error();
PRAGMA past.integrity_check;
DETACH past;
-- as_of far in the future is the newest version; before the first commit there is none.
ATTACH 'file:t015.db?vfs=s3vfs&as_of=2999-01-01T00:00:00Z' AS future;
SELECT group_concat(x) FROM future.t;
DETACH future;
ATTACH 'file:t015.db?vfs=s3vfs&as_of=2000-01-01T00:00:00Z' AS ancient;
SELECT s3vfs_last_error() LIKE '%a version as of 2000-01-01T00:00:00.000Z is not in the store (the store has versions 1 to 4;%';
-- Restore version 2: a new version 5 with its content; versions 3 and 4 stay.
SELECT s3vfs_restore('main', 2);
SELECT group_concat(x) FROM t;
PRAGMA integrity_check;
INSERT INTO t VALUES (4);
SELECT group_concat(x) FROM t;
ATTACH 'file:t015.db?vfs=s3vfs&version=4' AS before_restore;
SELECT group_concat(x) FROM before_restore.t;
DETACH before_restore;
SELECT json_array_length(s3vfs_versions());
-- The collector: every object is younger than the default margin (1 hour), so it keeps all.
SELECT json_extract(r, '$.removed.total.objects') AS removed, json_extract(r, '$.retained_versions') AS retained, json_extract(r, '$.margin_ms') AS margin_ms, json_extract(r, '$.keep') AS keep FROM (SELECT s3vfs_gc('main', '1') AS r);
SELECT json_extract(s3vfs_gc('main'), '$.keep');
SELECT json_extract(s3vfs_gc('main', '7d'), '$.keep');
-- Bad arguments and parameters are errors that say what is wrong.
SELECT s3vfs_gc('main', 'soon');
SELECT s3vfs_gc('nosuch');
SELECT s3vfs_restore('main', 99);
SELECT s3vfs_restore('main', 0);
ATTACH 'file:t015.db?vfs=s3vfs&version=two' AS bad;
SELECT s3vfs_last_error();
ATTACH 'file:t015.db?vfs=s3vfs&version=1&as_of=0' AS bad;
SELECT s3vfs_last_error();
ATTACH 'file:t015.db?vfs=s3vfs&gc_margin=10ms' AS bad;
SELECT s3vfs_last_error();
