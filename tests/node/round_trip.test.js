// The s3vfs extension loaded into better-sqlite3 (db.loadExtension), against the local S3 test
// server: write, close, then read back through a new Database and in a new process.
//
//   cd tests/node && CFLAGS=-DSQLITE_USE_URI=1 npm ci --build-from-source
//   node --test        # with S3VFS_LIB and the S3 server's environment, as `make test-bindings`
//
// better-sqlite3's bundled SQLite is built with SQLITE_USE_URI=0 and it opens without
// SQLITE_OPEN_URI, so `vfs=s3vfs` in a file: URI would be ignored (a local file of that name
// would be created); the CFLAGS above turn URI filenames on in the build from source.
'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const Database = require('better-sqlite3');
const { loadS3vfs, contents } = require('./s3vfs');

test('a database written through better-sqlite3 reads back in a new Database and a new process', () => {
  const bucket = process.env.S3VFS_BUCKET;
  assert.ok(bucket && process.env.AWS_ENDPOINT_URL,
    'set the S3 server environment: eval "$(scripts/s3-server.sh env)"');
  const name = `bindings/node-${process.pid}-${Date.now()}.db`;
  const uri = `file:${name}?vfs=s3vfs&bucket=${encodeURIComponent(bucket)}`;

  loadS3vfs();
  const db = new Database(uri);
  db.exec('CREATE TABLE IF NOT EXISTS product(id INTEGER PRIMARY KEY, name TEXT)');
  const insert = db.prepare('INSERT INTO product(name) VALUES (?)');
  const written = ['tea', 'coffee', 'ünïcødé ✓'];
  db.transaction((names) => names.forEach((item) => insert.run(item)))(written);
  const here = contents(db);
  db.close();
  assert.equal(here.prefix, name,
    'the database is not in S3: better-sqlite3 must be built with CFLAGS=-DSQLITE_USE_URI=1');
  assert.deepEqual(here.names, written);
  assert.ok(here.version >= 2, `two transactions committed, yet version ${here.version}`);

  const again = new Database(uri, { fileMustExist: true });
  assert.deepEqual(contents(again), here);
  again.close();

  const output = execFileSync(process.execPath, [path.join(__dirname, 'read.js'), uri],
    { encoding: 'utf8', timeout: 60_000 });
  assert.deepEqual(JSON.parse(output), here, 'a new process reads what this one wrote');
});
