"""The packages people install, built by README's make targets from the library under test
(the debug build) and installed where a user would: the wheel into a fresh virtual environment, the npm package
into a fresh Node project, the `make dist` archive unpacked. Each then keeps a database in the
local S3 server."""
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import s3vfs_util
from s3vfs_util import REPO, unique_name

LIB = Path(s3vfs_util.LIB)
SYSTEM_PYTHON = os.environ.get("SYSTEM_PYTHON", "/usr/bin/python3")
NODE_MODULES = REPO / "tests/node/node_modules"


def run(command, **kwargs):
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def make(target, out_dir):
    """`make TARGET` as README shows it, carrying the library under test into `out_dir`;
    returns the path the packaging script printed last."""
    output = run(["make", "-s", "-C", str(REPO), target, "PACKAGE_BUILD=build", f"PACKAGE_LIB={LIB}",
                  f"DIST={out_dir}"])
    return Path(output.strip().splitlines()[-1])


ROUND_TRIP = """
import sys, s3vfs
name = sys.argv[1]
uri = f"file:{name}?vfs=s3vfs"
if sys.argv[2] == "sqlite3":
    import sqlite3
    s3vfs.load(sqlite3.connect(":memory:"))
    open_db = lambda: sqlite3.connect(uri, uri=True, isolation_level=None)
else:
    import apsw
    s3vfs.load(apsw.Connection(":memory:"))
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI
    open_db = lambda: apsw.Connection(uri, flags=flags)
db = open_db()
db.execute("CREATE TABLE t(x)")
db.execute("INSERT INTO t VALUES ('from the package')")
db.close()
again = open_db()
print(again.execute("SELECT x FROM t").fetchall(), again.execute("SELECT json_extract(s3vfs_stats(), '$.version')").fetchall())
print(s3vfs.loadable_path())
"""


def test_the_wheel_installs_and_loads_into_sqlite3_and_apsw(tmp_path):
    wheel = make("wheel", tmp_path / "dist")
    assert wheel.name.startswith("s3vfs-") and wheel.suffix == ".whl", wheel
    venv = tmp_path / "venv"
    run([SYSTEM_PYTHON, "-m", "venv", str(venv)])
    run([str(venv / "bin/pip"), "install", "--no-index", "--quiet", str(wheel)])
    site = Path(run([str(venv / "bin/python"), "-c", "import s3vfs, os; print(os.path.dirname(os.path.dirname(s3vfs.__file__)))"]).strip())
    # The standard sqlite3 module of a fresh environment.
    out = run([str(venv / "bin/python"), "-c", ROUND_TRIP, unique_name("wheel-sqlite3"), "sqlite3"], cwd=tmp_path)
    assert "[('from the package',)]" in out and str(site) in out, out
    # apsw: the project's interpreter, with the installed package first on its path.
    out = run([sys.executable, "-c", ROUND_TRIP, unique_name("wheel-apsw"), "apsw"], cwd=tmp_path,
              env={**os.environ, "PYTHONPATH": str(site)})
    assert "[('from the package',)]" in out and str(site) in out, out


NODE_SCRIPT = """
const Database = require("better-sqlite3");
const s3vfs = require("s3vfs");
const name = process.argv[2];
const loader = new Database(":memory:");
s3vfs.load(loader);
loader.close();
const db = new Database(`file:${name}?vfs=s3vfs`);
db.exec("CREATE TABLE t(x)");
db.prepare("INSERT INTO t VALUES (?)").run("from the package");
db.close();
const again = new Database(`file:${name}?vfs=s3vfs`);
console.log(JSON.stringify(again.prepare("SELECT x FROM t").pluck().all()));
console.log(s3vfs.loadablePath());
"""


def test_the_npm_package_installs_and_loads_into_better_sqlite3(tmp_path):
    package = make("npm-package", tmp_path / "dist")
    project = tmp_path / "app"
    project.mkdir()
    run(["npm", "init", "-y"], cwd=project)
    run(["npm", "install", "--offline", "--no-audit", "--no-fund", str(package)], cwd=project)
    (project / "main.js").write_text(NODE_SCRIPT)
    name = unique_name("npm")
    # better-sqlite3 as the package's README installs it (URI filenames on): tests/node's build.
    out = run(["node", "main.js", name], cwd=project, env={**os.environ, "NODE_PATH": str(NODE_MODULES)})
    assert '["from the package"]' in out, out
    assert str(project / "node_modules/s3vfs/lib/libs3vfs") in out, out
    assert not list(project.glob("file:*")) and not (project / name).exists(), "no local file was made"


def test_make_dist_archive_holds_the_library_readme_and_licences(tmp_path):
    archive = make("dist", tmp_path)
    with tarfile.open(archive) as tar:
        files = sorted(Path(member.name).name for member in tar.getmembers() if member.isfile())
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert files == sorted([LIB.name, "README.md", "LICENSE-MIT", "LICENSE-APACHE", "THIRD-PARTY-LICENSES.md"]), files
    root = next((tmp_path / "unpacked").iterdir())
    licences = (root / "THIRD-PARTY-LICENSES.md").read_text()
    for crate in ("aws-sdk-s3", "tokio", "lru", "parking_lot", "bytes"):
        assert f"## {crate} " in licences, crate
    # The library in the archive works as it is.
    name = unique_name("dist")
    out = run([os.environ.get("SQLITE3", "sqlite3"), ":memory:", f".load {root / LIB.stem}",
               f".open 'file:{name}?vfs=s3vfs'", "CREATE TABLE t(x);", "INSERT INTO t VALUES (42);",
               "SELECT x FROM t;"])
    assert out.strip() == "42", out
