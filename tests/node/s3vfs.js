// Helpers of the better-sqlite3 tests: loading the s3vfs extension and reading a database.
'use strict';
const path = require('node:path');
const Database = require('better-sqlite3');

const LIB = process.env.S3VFS_LIB || path.resolve(__dirname, '../../target/debug/libs3vfs');

// The README's example: loading the extension once registers the s3vfs VFS for the whole
// process; databases opened afterwards with vfs=s3vfs in their URI live in S3.
function loadS3vfs() {
  const loader = new Database(':memory:');
  loader.loadExtension(LIB);
  loader.close();
}

// What the database holds, and what s3vfs says about it.
function contents(db) {
  const names = db.prepare('SELECT name FROM product ORDER BY id').pluck().all();
  const stats = JSON.parse(db.prepare('SELECT s3vfs_stats()').pluck().get());
  return { names, version: stats.version, prefix: stats.database && stats.database.prefix };
}

module.exports = { LIB, loadS3vfs, contents };
