-- Create a database, write it, read it back through a fresh handle, a second handle in the
-- same process, and another process.
.echo on
.load @LIB@
.open 'file:t002_shop.db?vfs=s3vfs'
CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, data BLOB);
CREATE INDEX item_name ON item(name);
INSERT INTO item(name, price, data) SELECT printf('item-%04d', value), value * 1.25, zeroblob(value % 300) FROM generate_series(1, 2000);
INSERT INTO item(name, price, data) VALUES ('unicode: ünïcødé ✓', NULL, x'00ff00ff');
SELECT count(*), sum(price), sum(length(data)) FROM item;
-- Reopen the same URI: a new handle that reads from S3.
.open 'file:t002_shop.db?vfs=s3vfs'
SELECT count(*), sum(price), sum(length(data)) FROM item;
SELECT name, price IS NULL, hex(data) FROM item WHERE id = 2001;
SELECT name FROM item WHERE name BETWEEN 'item-0998' AND 'item-1001' ORDER BY name;
PRAGMA integrity_check;
-- The bucket may also be given in the URI.
.open 'file:t002_shop.db?vfs=s3vfs&bucket=@BUCKET@'
SELECT count(*) FROM item;
-- A second handle on the same database in this process sees the first one's commits.
ATTACH 'file:t002_shop.db?vfs=s3vfs' AS again;
UPDATE item SET price = -1 WHERE id = 1;
SELECT price FROM again.item WHERE id = 1;
-- Another process (a cold cache) reads the same data.
.system @SQLITE@ -batch -init /dev/null -cmd '.load @LIB@' -cmd ".open 'file:t002_shop.db?vfs=s3vfs&mode=ro'" -cmd 'PRAGMA integrity_check' -cmd 'SELECT count(*), sum(price) FROM item' :memory: </dev/null
-- Another process writes.
.system @SQLITE@ -batch -init /dev/null -cmd '.load @LIB@' -cmd ".open 'file:t002_shop.db?vfs=s3vfs'" -cmd "INSERT INTO item(name) VALUES ('from another process')" :memory: </dev/null
-- This handle sees the other process's commit at its next transaction.
SELECT count(*), max(id) FROM item;
SELECT name FROM item WHERE id = (SELECT max(id) FROM item);
-- A database name may contain slashes: it is a key prefix in the bucket.
.open 'file:t002/nested/name.db?vfs=s3vfs'
CREATE TABLE n(x);
INSERT INTO n VALUES ('nested');
.open 'file:t002/nested/name.db?vfs=s3vfs'
SELECT x, json_extract(s3vfs_stats(), '$.database.prefix') FROM n;
