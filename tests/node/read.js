// Run by the tests as a separate process: `node read.js URI` prints, as JSON, what the s3vfs
// database at URI holds.
'use strict';
const Database = require('better-sqlite3');
const { loadS3vfs, contents } = require('./s3vfs');

loadS3vfs();
const db = new Database(process.argv[2], { fileMustExist: true });
process.stdout.write(JSON.stringify(contents(db)) + '\n');
db.close();
