#!/usr/bin/env bash
# A short demo: the stock sqlite3 CLI keeps a database in the local S3 server through s3vfs.
# Run through `make demo`, which builds the library and starts the server first.
set -euo pipefail
lib="${S3VFS_LIB:-./target/debug/libs3vfs}"
# The time, the process id and a random number: two runs in the same second get two names.
db="demo/shop-$(date +%Y%m%d-%H%M%S)-$$-${RANDOM}.db"
echo "== writing s3://${S3VFS_BUCKET}/${db} through the sqlite3 CLI"
sqlite3 <<SQL
.load ${lib}
.open 'file:${db}?vfs=s3vfs'
.headers on
.mode column
SELECT s3vfs_version() AS version;
CREATE TABLE product(id INTEGER PRIMARY KEY, name TEXT, price REAL);
INSERT INTO product(name, price) VALUES ('apple', 0.5), ('pear', 0.75), ('fig', 1.25);
BEGIN;
UPDATE product SET price = price * 2 WHERE name = 'fig';
COMMIT;
SELECT * FROM product;
SELECT json_extract(s3vfs_stats(), '$.version') AS committed_version;
SQL
echo "== reading it back in a new process"
sqlite3 <<SQL
.load ${lib}
.open 'file:${db}?vfs=s3vfs'
SELECT count(*) || ' products, total ' || sum(price) FROM product;
PRAGMA integrity_check;
SQL
echo "== the objects in the bucket"
"${PYTHON:-python3}" - "$db" <<'PY'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
listing = s3.list_objects_v2(Bucket=os.environ["S3VFS_BUCKET"], Prefix=sys.argv[1] + "/")
for item in listing.get("Contents", []):
    print(f"{item['Size']:>8}  {item['Key']}")
PY
