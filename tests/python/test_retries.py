"""What s3vfs takes from the AWS configuration and checks of the server: AWS_MAX_ATTEMPTS
bounds the attempts of every request (counted by a proxy that answers 503 to everything), an
endpoint from a profile gets path-style addressing, and a server that ignores If-None-Match
is refused before the first commit unless single_writer=1."""
import json
import os
import subprocess
import sys

from s3vfs_util import LIB, proxy_call, unique_name

OPEN_ONCE = """
import apsw, sys
loader = apsw.Connection(":memory:")
loader.enable_load_extension(True)
loader.load_extension(sys.argv[1])
try:
    apsw.Connection(sys.argv[2], flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI)
    print("opened")
except apsw.Error:
    print("refused:", loader.execute("SELECT s3vfs_last_error()").fetchall()[0][0])
"""


def open_in_a_process(proxy, attempts, **extra):
    env = {**os.environ, "AWS_MAX_ATTEMPTS": str(attempts), "S3VFS_LOG": "off", **extra}
    uri = f"file:{unique_name('retries')}?vfs=s3vfs&endpoint={proxy}"
    done = subprocess.run([sys.executable, "-c", OPEN_ONCE, LIB, uri], env=env, capture_output=True,
                          text=True, timeout=60)
    return done.stdout.strip()


def test_aws_max_attempts_bounds_every_request(proxy):
    proxy_call(proxy, "/__config?fail_percent=100", "POST")
    for attempts in (1, 3):
        proxy_call(proxy, "/__reset", "POST")
        outcome = open_in_a_process(proxy, attempts)
        assert outcome.startswith("refused:") and "503" in outcome, outcome
        stats = proxy_call(proxy, "/__stats")
        # Opening starts with one GET (the head hint): that many attempts, then the error.
        assert stats["total"] == attempts, stats
    proxy_call(proxy, "/__config?fail_percent=0", "POST")
    assert open_in_a_process(proxy, 1) == "opened"


WRITE_AND_COUNT = """
import apsw, json, sys
loader = apsw.Connection(":memory:")
loader.enable_load_extension(True)
loader.load_extension(sys.argv[1])
db = apsw.Connection(sys.argv[2], flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI)
db.execute("CREATE TABLE t(x)")
for n in range(20):
    db.execute("INSERT INTO t VALUES (?)", (n,))
rows = db.execute("SELECT count(*), sum(x) FROM t").fetchall()[0]
print(json.dumps({"rows": rows, "requests": json.loads(loader.execute("SELECT s3vfs_stats()").fetchall()[0][0])["process"]["requests"]}))
"""


def test_adaptive_retry_mode_paces_attempts_that_are_all_counted(proxy):
    """AWS_RETRY_MODE=adaptive lets the SDK's rate limiter pace s3vfs's attempts, but the SDK
    still makes one attempt per call: with a third of the requests refused (503 SlowDown)
    the work completes, and s3vfs counts every request the server saw."""
    # First: one attempt allowed, every request refused: exactly one request reaches the proxy.
    proxy_call(proxy, "/__config?fail_percent=100", "POST")
    proxy_call(proxy, "/__reset", "POST")
    outcome = open_in_a_process(proxy, 1, AWS_RETRY_MODE="adaptive")
    assert outcome.startswith("refused:") and "503" in outcome, outcome
    assert proxy_call(proxy, "/__stats")["total"] == 1
    proxy_call(proxy, "/__config?fail_percent=30", "POST")
    proxy_call(proxy, "/__reset", "POST")
    env = {**os.environ, "AWS_RETRY_MODE": "adaptive", "S3VFS_LOG": "off"}
    uri = f"file:{unique_name('adaptive')}?vfs=s3vfs&endpoint={proxy}&single_writer=1"
    done = subprocess.run([sys.executable, "-c", WRITE_AND_COUNT, LIB, uri], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    stats = proxy_call(proxy, "/__stats")
    proxy_call(proxy, "/__config?fail_percent=0", "POST")
    assert result["rows"] == [20, 190], result
    assert stats["errors"] > 0, stats
    assert result["requests"] == stats["total"], (result, stats)


def test_an_endpoint_from_a_profile_gets_path_style_addressing(tmp_path):
    config = tmp_path / "config"
    credentials = tmp_path / "credentials"
    config.write_text(
        "[profile s3vfs-local]\n"
        f"endpoint_url = {os.environ['AWS_ENDPOINT_URL'].replace('127.0.0.1', 'localhost')}\n"
        "region = us-east-1\n"
    )
    credentials.write_text(
        "[s3vfs-local]\n"
        f"aws_access_key_id = {os.environ['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {os.environ['AWS_SECRET_ACCESS_KEY']}\n"
    )
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("AWS_") or name in ("AWS_EC2_METADATA_DISABLED",)}
    env.update(AWS_PROFILE="s3vfs-local", AWS_CONFIG_FILE=str(config),
               AWS_SHARED_CREDENTIALS_FILE=str(credentials), S3VFS_LOG="off")
    uri = f"file:{unique_name('profile')}?vfs=s3vfs&bucket={os.environ['S3VFS_BUCKET']}"
    script = OPEN_ONCE.replace('    print("opened")', '''    conn = apsw.Connection(sys.argv[2], flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI)
    conn.execute("CREATE TABLE t(x)")
    conn.execute("INSERT INTO t VALUES (42)")
    print("opened", conn.execute("SELECT x FROM t").fetchall()[0][0])''')
    done = subprocess.run([sys.executable, "-c", script, LIB, uri], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "opened 42", (done.stdout, done.stderr)


def test_a_server_that_ignores_if_none_match_is_refused_before_the_first_commit(proxy):
    import apsw
    import boto3

    from s3vfs_util import connect

    proxy_call(proxy, "/__config?ignore_if_none_match=1", "POST")
    name = unique_name("careless")
    env = {**os.environ, "S3VFS_LOG": "off"}
    uri = f"file:{name}?vfs=s3vfs&endpoint={proxy}"
    script = OPEN_ONCE.replace('    print("opened")', '''    conn = apsw.Connection(sys.argv[2], flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI)
    try:
        conn.execute("CREATE TABLE t(x)")
        print("committed")
    except apsw.Error:
        print("refused:", loader.execute("SELECT s3vfs_last_error()").fetchall()[0][0])''')
    done = subprocess.run([sys.executable, "-c", script, LIB, uri], env=env, capture_output=True,
                          text=True, timeout=60)
    outcome = done.stdout.strip()
    assert outcome.startswith("refused:") and "If-None-Match" in outcome and proxy in outcome, outcome
    assert "single_writer=1" in outcome, outcome
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    left = s3.list_objects_v2(Bucket=os.environ["S3VFS_BUCKET"], Prefix=name + "/").get("KeyCount")
    assert left == 0, "nothing committed, and the probe object deleted"

    # Opting out (one writer only) commits.
    done = subprocess.run([sys.executable, "-c", script, LIB, uri + "&single_writer=1"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "committed", (done.stdout, done.stderr)
    conn = connect(name)
    assert conn.execute("SELECT count(*) FROM sqlite_schema WHERE name = 't'").fetchall() == [(1,)]
    conn.close()
