#!/usr/bin/env bash
# Local S3-compatible test server for s3vfs: moto's S3 under gunicorn, with a
# global lock per request (scripts/moto_wsgi.py) so conditional PUTs are atomic.
#
#   scripts/s3-server.sh install|start|stop|status|env
#   eval "$(scripts/s3-server.sh env)"     # after start
#
# Settings (env): S3VFS_TEST_PORT (9100), S3VFS_TEST_DIR (/tmp/s3vfs-test-s3),
# S3VFS_TEST_BUCKET (s3vfs-test), S3VFS_TEST_AUTH (1; 0 = no auth, keys test/test).
#
# Auth: with S3VFS_TEST_AUTH=1, start creates an IAM user with an access key
# while moto still accepts anonymous requests, then turns on moto's request
# authentication (POST /moto-api/reset-auth 0). From then on every request must
# be SigV4-signed with that key: a wrong secret gets 403 SignatureDoesNotMatch,
# an unknown key id 403 InvalidAccessKeyId. The key is random per server start
# and saved in $S3VFS_TEST_DIR/credentials; `env` prints it. Data is in memory
# only; a moto reset (POST /moto-api/reset) also drops the key.
set -euo pipefail

PORT="${S3VFS_TEST_PORT:-9100}"
DIR="${S3VFS_TEST_DIR:-/tmp/s3vfs-test-s3}"
BUCKET="${S3VFS_TEST_BUCKET:-s3vfs-test}"
AUTH="${S3VFS_TEST_AUTH:-1}"
URL="http://127.0.0.1:$PORT"
PIDFILE="$DIR/server.pid"
CREDS="$DIR/credentials"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"

pid() { [[ -s "$PIDFILE" ]] && cat "$PIDFILE"; }

running() {
  local p
  p="$(pid)" || return 1
  kill -0 "$p" 2>/dev/null && grep -q moto_wsgi "/proc/$p/cmdline" 2>/dev/null
}

answers() { curl -s -o /dev/null --max-time 2 "$URL/moto-api/config"; }

healthy() { running && [[ -s "$CREDS" ]] && answers; }

install() {
  if ! "$PY" -c 'import moto.moto_server.werkzeug_app, gunicorn, boto3' 2>/dev/null; then
    "$PY" -m pip install -q 'moto[server]>=5' gunicorn
  fi
}

stop() {
  local p
  if p="$(pid)" && running; then
    kill "$p"
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then pkill -9 -P "$p" || true; kill -9 "$p"; fi
  fi
  rm -f "$PIDFILE" "$CREDS"
}

setup() {
  # Create the IAM user/key (anonymous), enable auth, create the bucket (signed).
  URL="$URL" BUCKET="$BUCKET" AUTH="$AUTH" CREDS="$CREDS" "$PY" - <<'EOF'
import json, os, urllib.request
import boto3
url, auth = os.environ["URL"], os.environ["AUTH"] != "0"
kw = dict(endpoint_url=url, region_name="us-east-1")
key, secret = "test", "test"
if auth:
    iam = boto3.client("iam", aws_access_key_id="test", aws_secret_access_key="test", **kw)
    iam.create_user(UserName="s3vfs-test")
    iam.put_user_policy(UserName="s3vfs-test", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    k = iam.create_access_key(UserName="s3vfs-test")["AccessKey"]
    key, secret = k["AccessKeyId"], k["SecretAccessKey"]
    urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"})).read()
s3 = boto3.client("s3", aws_access_key_id=key, aws_secret_access_key=secret, **kw)
if os.environ["BUCKET"] not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
    s3.create_bucket(Bucket=os.environ["BUCKET"])
with open(os.environ["CREDS"] + ".tmp", "w") as f:
    f.write(f"AWS_ACCESS_KEY_ID={key}\nAWS_SECRET_ACCESS_KEY={secret}\n")
os.replace(os.environ["CREDS"] + ".tmp", os.environ["CREDS"])
EOF
}

lock() { mkdir -p "$DIR"; exec 9>"$DIR/lock"; flock 9; }

start() {
  lock
  if healthy; then echo "s3 test server already running on $URL (pid $(pid))"; return 0; fi
  stop
  if answers; then echo "port $PORT is already in use by another server" >&2; exit 1; fi
  install
  : >"$DIR/server.log"
  # Keep moto's own auth switch out of it: setup() turns auth on after creating the key.
  env -u INITIAL_NO_AUTH_ACTION_COUNT MOTO_PORT="$PORT" PYTHONDONTWRITEBYTECODE=1 nohup "$PY" -m gunicorn \
    --chdir "$HERE" --bind "127.0.0.1:$PORT" --worker-class gthread --workers 1 --threads 8 \
    --keep-alive 60 --timeout 120 --graceful-timeout 5 --pid "$PIDFILE" \
    --log-level warning moto_wsgi:app >>"$DIR/server.log" 2>&1 </dev/null 9>&- &
  for _ in $(seq 300); do
    if running && answers; then break; fi
    if ! kill -0 $! 2>/dev/null; then echo "server exited; see $DIR/server.log" >&2; exit 1; fi
    sleep 0.1
  done
  answers || { echo "server did not answer within 30 s; see $DIR/server.log" >&2; stop; exit 1; }
  setup || { echo "server setup failed; see $DIR/server.log" >&2; stop; exit 1; }
  echo "s3 test server running on $URL (pid $(pid)), bucket $BUCKET"
}

env_lines() {
  [[ -s "$CREDS" ]] || { echo "s3 test server not started (no $CREDS)" >&2; exit 1; }
  # shellcheck disable=SC1090
  source "$CREDS"
  cat <<EOF
export AWS_ENDPOINT_URL=$URL
export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export AWS_REGION=us-east-1
export S3VFS_BUCKET=$BUCKET
export S3VFS_TEST_BUCKET=$BUCKET
EOF
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) lock; stop ;;
  status) if healthy; then echo "running on $URL (pid $(pid))"; else echo "not running"; exit 1; fi ;;
  env) env_lines ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
