#!/usr/bin/env bash
# Runs the SQL tests in sql-tests/ through the real sqlite3 command-line shell.
#
#   scripts/run-sql-tests.sh                 # every sql-tests/NNN_name.sql, in order
#   scripts/run-sql-tests.sh 003 006_vacuum  # only the tests whose names start so
#   UPDATE_EXPECTED=1 scripts/run-sql-tests.sh   # (re)write the .expected files
#
# Each test is piped into `sqlite3 -batch -init /dev/null` (no -bail: a failing statement
# prints its error and the script goes on, so error cases are part of the output), run from
# the repository root, with stdout and stderr merged. The shell runs under `stdbuf -oL` so
# that its output is line-buffered: results, errors (stderr), the echo of dot-commands and
# the output of `.system` children then appear in the order they happen. The output must
# equal sql-tests/NNN_name.sql.expected exactly; a mismatch prints a unified diff.
#
# Placeholders substituted in the SQL before it reaches sqlite3 (the shell does not expand
# variables): @LIB@ (the extension, S3VFS_LIB), @BUCKET@ (this run's bucket), @SQLITE@
# (the sqlite3 binary, for `.system` children) and @TMP@ (an empty local directory of the
# test's own, for files it reads and writes). In the output, this run's bucket name, the
# library path, the sqlite3 path, the directory and the endpoint URL are turned back into
# @BUCKET@, @LIB@, @SQLITE@, @TMP@ and @ENDPOINT@, so expected files do not depend on them.
#
# Every run of the suite creates a fresh bucket sqltests-<random hex> (exported as
# S3VFS_BUCKET), so reruns are independent; it is emptied and deleted at the end unless
# KEEP_BUCKET=1.
#
# Environment:
#   S3VFS_LIB   the extension to load, without suffix (default ./target/debug/libs3vfs)
#   SQLITE3     the sqlite3 shell (default /usr/bin/sqlite3)
#   STDBUF      coreutils' stdbuf (default: stdbuf from PATH; gstdbuf on macOS)
#   AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION: the S3 server.
#     When AWS_ENDPOINT_URL is unset, the local moto server is started with
#     scripts/s3-server.sh (its S3VFS_TEST_PORT / S3VFS_TEST_DIR settings apply) and its
#     settings are used. The expected files record moto's error texts.
#   SQL_TEST_TIMEOUT  seconds one test may take (default 120)
set -uo pipefail
shopt -u patsub_replacement 2>/dev/null || true

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

SQLITE="${SQLITE3:-/usr/bin/sqlite3}"
LIB="${S3VFS_LIB:-./target/debug/libs3vfs}"
TIMEOUT="${SQL_TEST_TIMEOUT:-120}"
PY="${PYTHON:-python3}"

die() { echo "run-sql-tests: $*" >&2; exit 2; }

[[ -x "$SQLITE" ]] || die "no sqlite3 shell at $SQLITE (set SQLITE3)"
STDBUF="${STDBUF:-$(command -v stdbuf || command -v gstdbuf)}" || true
[[ -n "$STDBUF" ]] || die "stdbuf (GNU coreutils) is needed to keep the shell's output in order (set STDBUF)"
if [[ ! -e "$LIB" && ! -e "$LIB.so" && ! -e "$LIB.dylib" ]]; then
  die "no extension at $LIB(.so): build it first (cargo build) or set S3VFS_LIB"
fi

if [[ -z "${AWS_ENDPOINT_URL:-}" ]]; then
  bash scripts/s3-server.sh start >&2 || die "cannot start the local S3 server"
  server_env="$(bash scripts/s3-server.sh env)" || die "cannot read the local S3 server's settings"
  eval "$server_env"
fi
# Messages must reach stderr (and so the output) whatever the caller's setting.
unset S3VFS_LOG

BUCKET="sqltests-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
export S3VFS_BUCKET="$BUCKET"

bucket_op() {
  BUCKET="$BUCKET" OP="$1" "$PY" - <<'EOF'
import os
import boto3
s3 = boto3.client("s3")
bucket = os.environ["BUCKET"]
if os.environ["OP"] == "create":
    region = s3.meta.region_name
    if region and region != "us-east-1":
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    else:
        s3.create_bucket(Bucket=bucket)
else:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[start:start + 1000], "Quiet": True})
    s3.delete_bucket(Bucket=bucket)
EOF
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sql-tests.XXXXXX")" || die "cannot create a temp dir"
cleanup() {
  if [[ "${KEEP_BUCKET:-0}" != 1 ]]; then
    bucket_op delete >/dev/null 2>&1 || echo "run-sql-tests: could not delete bucket $BUCKET" >&2
  else
    echo "run-sql-tests: kept bucket $BUCKET" >&2
  fi
  rm -rf "$WORK"
}
bucket_op create || die "cannot create bucket $BUCKET at ${AWS_ENDPOINT_URL:-AWS}"
trap cleanup EXIT

# Literal replacement of placeholders and run-specific strings (no regex, no '&' meaning).
replace_all() {
  local text="$1"
  shift
  while (($# >= 2)); do
    [[ -n "$1" ]] && text="${text//"$1"/"$2"}"
    shift 2
  done
  printf '%s' "$text"
}

selected() {
  local name="$1" filter
  ((${#FILTERS[@]} == 0)) && return 0
  for filter in "${FILTERS[@]}"; do
    [[ "$name" == "$filter"* ]] && return 0
  done
  return 1
}

FILTERS=("$@")
passed=0
failed=0
failures=()
shopt -s nullglob
tests=(sql-tests/[0-9][0-9][0-9]_*.sql)
((${#tests[@]})) || die "no tests in sql-tests/"

for file in "${tests[@]}"; do
  name="$(basename "$file" .sql)"
  selected "$name" || continue
  expected="$file.expected"
  actual="$WORK/$name.out"
  scratch="$WORK/$name.tmp"
  mkdir -p "$scratch"

  sql="$(cat "$file"; echo x)"
  sql="${sql%x}"
  sql="$(replace_all "$sql" @LIB@ "$LIB" @BUCKET@ "$BUCKET" @SQLITE@ "$SQLITE" @TMP@ "$scratch"; echo x)"
  sql="${sql%x}"

  started=$SECONDS
  output="$(cd "$scratch" && printf '%s' "$sql" | timeout "$TIMEOUT" "$STDBUF" -oL "$SQLITE" -batch -init /dev/null 2>&1; echo "x${PIPESTATUS[1]}")"
  status="${output##*x}"
  output="${output%x*}"
  elapsed=$((SECONDS - started))
  # 0 and 1 (some statement failed) are ordinary; anything else is a crash or a timeout.
  if [[ "$status" != 0 && "$status" != 1 ]]; then
    if [[ "$status" == 124 ]]; then
      output+="[sqlite3 timed out after ${TIMEOUT}s]"$'\n'
    else
      output+="[sqlite3 exited with status $status]"$'\n'
    fi
  fi
  replace_all "$output" "$scratch" @TMP@ "$BUCKET" @BUCKET@ "$LIB" @LIB@ "$SQLITE" @SQLITE@ "${AWS_ENDPOINT_URL:-}" @ENDPOINT@ >"$actual"

  if [[ "${UPDATE_EXPECTED:-0}" == 1 ]]; then
    cp "$actual" "$expected"
    echo "UPDATED $name (${elapsed}s)"
    passed=$((passed + 1))
  elif [[ ! -f "$expected" ]]; then
    echo "FAIL $name: no $expected (run with UPDATE_EXPECTED=1 to create it)"
    failed=$((failed + 1))
    failures+=("$name")
  elif cmp -s "$expected" "$actual"; then
    echo "PASS $name (${elapsed}s)"
    passed=$((passed + 1))
  else
    echo "FAIL $name (${elapsed}s)"
    diff -u --label "$expected" --label "actual output" "$expected" "$actual"
    failed=$((failed + 1))
    failures+=("$name")
  fi
done

((passed + failed)) || die "no test matches: ${FILTERS[*]}"
((failed)) && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
((failed == 0))
