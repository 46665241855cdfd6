// s3vfs for Node: the path of the s3vfs SQLite extension shipped in this package, and a
// helper that loads it into a better-sqlite3 (or node:sqlite) database.
"use strict";

const fs = require("fs");
const path = require("path");

/** The extension's path without its file suffix, as SQLite's load_extension takes it. */
function loadablePath() {
  const dir = path.join(__dirname, "lib");
  for (const suffix of [".so", ".dylib", ".dll"]) {
    const candidate = path.join(dir, "libs3vfs" + suffix);
    if (fs.existsSync(candidate)) {
      return path.join(dir, "libs3vfs");
    }
  }
  throw new Error(`the s3vfs library is missing from ${dir}`);
}

/**
 * Loads s3vfs into `db`: the VFS "s3vfs" and its SQL functions are then registered for every
 * database of the process's SQLite. better-sqlite3 databases have loadExtension(); node:sqlite
 * ones need allowExtension: true and have loadExtension() too.
 */
function load(db) {
  if (typeof db.loadExtension !== "function") {
    throw new TypeError("s3vfs.load needs a database with loadExtension() (better-sqlite3, node:sqlite)");
  }
  db.loadExtension(loadablePath());
}

module.exports = { loadablePath, load };
