"""Every test here needs the local S3 test server and the built extension. When either is
missing, each test FAILS (it does not skip) with a message saying how to provide it."""
import faulthandler
import functools
import os
import urllib.error
import urllib.request

import pytest

import subprocess
import sys
import time

from s3vfs_util import LIB, REPO, REQUIRED_ENV

HOW_TO = (
    'start the server and export its settings first:\n'
    '    bash scripts/s3-server.sh start && eval "$(bash scripts/s3-server.sh env)"'
)


@functools.lru_cache(maxsize=None)
def environment_problem():
    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        return f"s3vfs tests need the S3 test server environment; missing {', '.join(missing)}: {HOW_TO}"
    if not os.path.isfile(LIB):
        return f"the s3vfs extension {LIB} does not exist: build it (cargo build) or set S3VFS_LIB"
    url = os.environ["AWS_ENDPOINT_URL"]
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.HTTPError:
        pass  # It answers (anonymous requests are refused): good enough.
    except (urllib.error.URLError, OSError) as error:
        return f"the S3 test server at AWS_ENDPOINT_URL={url} does not answer ({error}): {HOW_TO}"
    return None


# A test that hangs inside the extension (where no subprocess timeout reaches) aborts the
# run with every thread's traceback instead of hanging forever.
HANG_LIMIT_SECONDS = 180


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    problem = environment_problem()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    faulthandler.dump_traceback_later(HANG_LIMIT_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def proxy(tmp_path):
    """bench/proxy.py in front of the local S3 server, with no delay: its URL. Tests turn on
    its faults with proxy_call(url, "/__config?...", "POST")."""
    port_file = tmp_path / "proxy-port"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "proxy.py"), "--upstream", os.environ["AWS_ENDPOINT_URL"],
         "--latency-ms", "0", "--jitter-ms", "0", "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        process.terminate()
        process.wait(timeout=10)
