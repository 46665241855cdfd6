#!/usr/bin/env bash
# Runs, for each binding the README shows, a write-then-reopen round trip against the S3
# server: one process writes a fresh database, another process reads it back and must find
# exactly what was written.
#
#   scripts/run-binding-tests.sh            # every binding
#   scripts/run-binding-tests.sh node go    # only these: cli python-sqlite3 node go rusqlite
#
# The bindings: the sqlite3 CLI (`.load`), Python's standard sqlite3 module (run by
# $SYSTEM_PYTHON, default /usr/bin/python3: Debian's interpreter can load extensions),
# Node's better-sqlite3 (tests/node, `node --test`; its node_modules comes from `make
# node-deps`), Go's mattn/go-sqlite3 (tests/go, `go test`, built offline against Debian's
# golang-github-mattn-go-sqlite3-dev) and Rust's rusqlite (`cargo test --test
# rusqlite_round_trip`). Python apsw is tested in tests/python.
#
# Environment: S3VFS_LIB (the extension; default target/debug/libs3vfs.so) and the S3
# server's settings, as `eval "$(scripts/s3-server.sh env)"` exports them (`make
# test-bindings` does both).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

die() { echo "run-binding-tests: $*" >&2; exit 2; }

LIB="${S3VFS_LIB:-$ROOT/target/debug/libs3vfs.so}"
[[ "$LIB" == /* ]] || LIB="$ROOT/$LIB"
export S3VFS_LIB="$LIB"
SQLITE="${SQLITE3:-sqlite3}"
SYSTEM_PYTHON="${SYSTEM_PYTHON:-/usr/bin/python3}"
[[ -e "$LIB" ]] || die "no extension at $LIB: build it first (cargo build --lib) or set S3VFS_LIB"
for variable in AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY S3VFS_BUCKET; do
  [[ -n "${!variable:-}" ]] || die "$variable is not set: eval \"\$(scripts/s3-server.sh env)\""
done

# The README's CLI example: the writer and the reader are separate sqlite3 processes.
test_cli() {
  local uri="file:bindings/cli-$$-$(date +%s%N).db?vfs=s3vfs&bucket=$S3VFS_BUCKET" found
  printf '%s\n' ".load $LIB" ".open '$uri'" \
    "CREATE TABLE IF NOT EXISTS product(id INTEGER PRIMARY KEY, name TEXT);" \
    "INSERT INTO product(name) VALUES ('tea'), ('coffee'), ('ünïcødé ✓');" |
    "$SQLITE" -batch -bail -init /dev/null || return 1
  found="$(printf '%s\n' ".load $LIB" ".open '$uri'" \
    "SELECT group_concat(name, ',') FROM (SELECT name FROM product ORDER BY id);" \
    "SELECT json_extract(s3vfs_stats(), '\$.version') >= 2;" |
    "$SQLITE" -batch -bail -init /dev/null)" || return 1
  if [[ "$found" != $'tea,coffee,ünïcødé ✓\n1' ]]; then
    echo "a new sqlite3 process read: $found" >&2
    return 1
  fi
}

test_python_sqlite3() { "$SYSTEM_PYTHON" tests/python-sqlite3/round_trip.py; }

test_node() {
  if [[ ! -d tests/node/node_modules/better-sqlite3 ]]; then
    echo "tests/node has no node_modules: run make node-deps" >&2
    return 1
  fi
  (cd tests/node && node --test)
}

test_go() { (cd tests/go && GOPROXY=off GOTOOLCHAIN=local go test -count=1 .); }

test_rusqlite() { cargo test -q --test rusqlite_round_trip; }

ALL=(cli python-sqlite3 node go rusqlite)
selected=("$@")
((${#selected[@]})) || selected=("${ALL[@]}")
passed=0
failed=0
failures=()
for binding in "${selected[@]}"; do
  [[ " ${ALL[*]} " == *" $binding "* ]] || die "unknown binding $binding (one of: ${ALL[*]})"
  echo "=== $binding"
  started=$SECONDS
  if "test_${binding//-/_}"; then
    echo "PASS $binding ($((SECONDS - started))s)"
    passed=$((passed + 1))
  else
    echo "FAIL $binding ($((SECONDS - started))s)"
    failed=$((failed + 1))
    failures+=("$binding")
  fi
done
((failed)) && echo "failed: ${failures[*]}"
echo "bindings: $passed passed, $failed failed"
((failed == 0))
