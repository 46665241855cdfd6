"""The README's examples, taken from README.md itself (not copied) and run against the local
S3 server, so that a snippet that stops working fails the tests: the sqlite3 CLI sessions,
Python with apsw and with the standard sqlite3 module, Node's better-sqlite3 and Go's
go-sqlite3. (build.rs takes the Rust example out of README.md; tests/rusqlite_round_trip.rs
compiles and runs it.)"""
import os
import re
import shutil
import subprocess
import sys

import pytest

from s3vfs_util import LIB, REPO, finish_worker, start_worker, unique_name
from test_s3vfs import make_counter

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SYSTEM_PYTHON = os.environ.get("SYSTEM_PYTHON", "/usr/bin/python3")


def blocks(language, containing):
    """The README's code blocks of `language` that contain `containing`."""
    text = (REPO / "README.md").read_text()
    found = [body for lang, body in FENCE.findall(text) if lang == language and containing in body]
    assert found, f"README.md has no {language or 'plain'} block with {containing!r}"
    return found


def run(command, **kwargs):
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert "Error" not in done.stderr, (done.stdout, done.stderr)
    return done.stdout


def test_the_sqlite3_cli_sessions_run():
    for session in blocks("", "sqlite> .load ./target/debug/libs3vfs"):
        commands = [line[len("sqlite> "):] for line in session.splitlines() if line.startswith("sqlite> ")]
        out = run([os.environ.get("SQLITE3", "sqlite3"), "-bail"], input="\n".join(commands) + "\n")
        assert out.strip(), session


def test_the_python_examples_run():
    for example in blocks("python", "load_extension"):
        python = sys.executable if "import apsw" in example else SYSTEM_PYTHON
        out = run([python, "-c", example])
        assert "tea" in out and "coffee" in out, out


def test_the_node_example_runs():
    (example,) = blocks("js", "better-sqlite3")
    modules = REPO / "tests" / "node" / "node_modules"
    assert modules.is_dir(), "tests/node/node_modules is missing: make node-deps"
    out = run(["node", "-e", example], env={**os.environ, "NODE_PATH": str(modules)})
    assert "tea" in out, out


def test_the_go_example_runs(tmp_path):
    (example,) = blocks("go", "go-sqlite3")
    shutil.copy(REPO / "tests" / "go" / "go.mod", tmp_path / "go.mod")
    (tmp_path / "main.go").write_text(example)
    env = {**os.environ, "GOPROXY": "off", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    # Run from the repository, so that the example's ./target/debug/libs3vfs resolves.
    subprocess.run(["go", "build", "-o", str(tmp_path / "example"), "."], cwd=tmp_path, env=env,
                   check=True, capture_output=True, timeout=600)
    out = run([str(tmp_path / "example")], env=env)
    assert out.startswith("version "), out


def test_two_demos_at_once_write_two_databases():
    """`make demo` runs scripts/demo.sh; two at once (or in one second) must not share a name."""
    demos = [subprocess.Popen(["bash", "scripts/demo.sh"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHON": sys.executable})
             for _ in range(2)]
    outputs = [demo.communicate(timeout=300) for demo in demos]
    assert all(demo.returncode == 0 for demo in demos), outputs
    names = [re.search(r"== writing (s3://\S+)", out).group(1) for out, _ in outputs]
    assert names[0] != names[1], names
    for out, _ in outputs:
        assert "3 products, total 3.75" in out and "\nok\n" in out, out


def troubleshooting_messages():
    """The quoted messages of README's Troubleshooting table, by the first words of their row."""
    text = (REPO / "README.md").read_text()
    table = text.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return {row.split("`")[1].split("…")[0].strip(): row for row in rows}


LIB_STEM = os.path.splitext(LIB)[0]


def cli_error(uri, sql="SELECT 1;", **env):
    done = subprocess.run(
        [os.environ.get("SQLITE3", "sqlite3"), ":memory:", f".load {LIB_STEM}", f".open '{uri}'", sql],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )
    return done.stdout + done.stderr



def test_troubleshooting_messages_are_what_s3vfs_prints(tmp_path):
    messages = troubleshooting_messages()
    assert len(messages) >= 7, messages
    assert "Error" not in cli_error("file:trouble-bs.db?vfs=s3vfs&block_size=8192", "CREATE TABLE IF NOT EXISTS t(x);")
    found = {
        "bucket '": cli_error("file:trouble.db?vfs=s3vfs&bucket=no-such-bucket-for-readme"),
        "failed with HTTP 403": cli_error("file:trouble.db?vfs=s3vfs", AWS_SECRET_ACCESS_KEY="not-the-key"),
        "cannot reach http://": cli_error("file:trouble.db?vfs=s3vfs&endpoint=http://127.0.0.1:1"),
        "unknown URI parameter \"": cli_error("file:trouble.db?vfs=s3vfs&blok_size=4096"),
        "block_size=": cli_error("file:trouble-bs.db?vfs=s3vfs&block_size=4096"),
    }
    # An encrypted database opened without its key, with another, and a plain one with a key.
    sealed = f"file:{unique_name('trouble-sealed')}?vfs=s3vfs"
    key, other = "ab" * 32, "cd" * 32
    assert "Error" not in cli_error(sealed, "CREATE TABLE t(x);", S3VFS_ENCRYPTION_KEY=key)
    found["is encrypted with aes-256-gcm (key fingerprint"] = cli_error(sealed)
    found["is encrypted with the key of fingerprint"] = cli_error(sealed, S3VFS_ENCRYPTION_KEY=other)
    found["is not encrypted, but S3VFS_ENCRYPTION_KEY is set"] = cli_error(
        "file:trouble-bs.db?vfs=s3vfs", S3VFS_ENCRYPTION_KEY=key)
    for start, output in found.items():
        assert start in messages, (start, list(messages))
        quoted = [part.split("…")[0] for part in messages[start].split("|")[1].split("`")[1::2]]
        for fragment in quoted:
            if fragment.strip():
                assert fragment.strip() in output, (fragment, output)
    # The commit race: two processes write on one version; the loser's message is the row's.
    race = messages["another writer committed version N first; this transaction was rolled back, retry it"]
    name = unique_name("trouble-race")
    make_counter(name, 1).close()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    racers = [start_worker("conflict", name, barrier, me, 2) for me in range(2)]
    loser = [result for result in (finish_worker(racer, timeout=60) for racer in racers) if not result["committed"]]
    assert len(loser) == 1, loser
    assert "SQLITE_BUSY_SNAPSHOT" in race and loser[0]["extended"] == 517, loser
    assert loser[0]["last_error"].endswith(race.split("`")[1].split("version N")[1]), loser
    assert "another writer committed version" in loser[0]["last_error"], loser
