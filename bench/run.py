"""s3vfs benchmarks: the same workloads on three systems, behind a latency-injecting proxy.

    python3 bench/run.py [--quick] [--latency 20:5 --latency 0:0] [--out bench/RESULTS.md]

Needs the local S3 server's settings in the environment (`eval "$(scripts/s3-server.sh env)"`:
AWS_ENDPOINT_URL and the keys) and the built library (--lib, default
target/release/libs3vfs.so). `make bench` and `make bench-quick` do all of that.

For each latency setting (LATENCY:JITTER in ms; default 20:5, a real region, and 0:0) the proxy
(bench/proxy.py) delays every request and counts it; each system gets a fresh bucket, and every
(system, workload) cell runs in its own child process (bench/cell.py), so the peak RSS is the
cell's and a cold cache is a new process. The wall time covers the workload only, opening the
connection included (warm lookups excepted: they run after the same lookups in the same
connection); setup such as creating the table for the single-insert transactions is untimed.
Lookups, scan and CREATE INDEX use the table the large insert made, serialize the database
deserialize made. The large lookups use a bigger table of the same kind (1 GB in full mode),
deserialized untimed by the first cell that needs it, with the default block size and with
16 KiB blocks (B-tree prefetch on and off). One table per latency setting is printed and
written to --out.

Exit status: 1 if a cell failed (a query error, a wrong result, a crash), else 0. A cell that
runs past --cell-timeout is reported as such and is not a failure; nor is any time.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import apsw

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SYSTEMS = ("s3vfs", "sqlite-s3vfs", "local")
SYSTEM_LABELS = {"s3vfs": "s3vfs", "sqlite-s3vfs": "sqlite-s3vfs (PyPI)", "local": "local file"}
WORKLOADS = (
    "insert_small",
    "insert_big",
    "txns",
    "lookup_cold",
    "lookup_warm",
    "lookup_threads",
    "lookup_connect",
    "scan",
    "index",
    "deserialize",
    "serialize",
    "txns_large",
    "lookup_disk",
    "large_lookup",
    "large_lookup_noindex",
    "large_lookup_16k",
    "large_lookup_16k_off",
)
NEEDS = {  # a workload runs only if the one that made its database succeeded
    "lookup_cold": "insert_big",
    "lookup_warm": "insert_big",
    "lookup_threads": "insert_big",
    "lookup_connect": "insert_big",
    "scan": "insert_big",
    "index": "insert_big",
    "serialize": "deserialize",
    "txns_large": "deserialize",
    "lookup_disk": "insert_big",
}
DATABASE = {
    "insert_small": "small.db",
    "insert_big": "big.db",
    "txns": "txns.db",
    "lookup_cold": "big.db",
    "lookup_warm": "big.db",
    "lookup_threads": "big.db",
    "lookup_connect": "big.db",
    "scan": "big.db",
    "index": "big.db",
    "deserialize": "image.db",
    "serialize": "image.db",
    "txns_large": "image.db",
    "lookup_disk": "big.db",
    "large_lookup": "large.db",
    "large_lookup_noindex": "large.db",
    "large_lookup_16k": "large16k.db",
    "large_lookup_16k_off": "large16k.db",
}
# URI parameters of s3vfs for a workload (cache_dir is added where the bench knows its path).
PARAMS = {
    "large_lookup_noindex": {"interior_index": "0"},
    "large_lookup_16k": {"block_size": "16k"},
    "large_lookup_16k_off": {"block_size": "16k", "prefetch_size": "0", "interior_index": "0"},
}
SIZES = {
    "full": {"small_rows": 10_000, "big_rows": 100_000, "txns": 200, "lookups": 1000, "image_mb": 100,
             "threads": 8, "connects": 200, "large_mb": 1000, "large_lookups": 200},
    # Sized so that the slowest system (sqlite-s3vfs, several sequential requests per
    # statement) keeps the whole run near a minute and a half at 20 ms.
    "quick": {"small_rows": 1000, "big_rows": 3000, "txns": 10, "lookups": 50, "image_mb": 1,
              "threads": 4, "connects": 10, "large_mb": 8, "large_lookups": 20},
}
KIND_COLUMNS = (
    ("get", "GET"),
    ("head", "HEAD"),
    ("list", "LIST"),
    ("put", "PUT"),
    ("put_if_absent", "PUT if-none-match"),
    ("delete", "DELETE"),
    ("other", "other"),
)


def count(n):
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def workload_label(workload, sizes):
    return {
        "insert_small": f"insert {count(sizes['small_rows'])} rows, 1 txn",
        "insert_big": f"insert {count(sizes['big_rows'])} rows, 1 txn",
        "txns": f"{sizes['txns']} txns of 1 insert",
        "lookup_cold": f"{sizes['lookups']:,} lookups by rowid, cold",
        "lookup_warm": f"{sizes['lookups']:,} lookups by rowid, warm",
        "lookup_threads": f"{sizes['lookups']:,} lookups, {sizes['threads']} threads",
        "lookup_connect": f"{sizes['connects']:,} lookups, a connection each",
        "scan": f"full scan, COUNT and SUM ({count(sizes['big_rows'])} rows)",
        "index": f"CREATE INDEX ({count(sizes['big_rows'])} rows)",
        "deserialize": f"deserialize {sizes['image_mb']} MB",
        "serialize": f"serialize {sizes['image_mb']} MB",
        "txns_large": f"{sizes['txns']} txns of 1 insert, {sizes['image_mb']} MB database",
        "lookup_disk": f"{sizes['lookups']:,} lookups, new process, warm cache_dir",
        "large_lookup": f"{sizes['large_lookups']} lookups, cold, {sizes['large_mb']:,} MB database",
        "large_lookup_noindex": f"{sizes['large_lookups']} lookups, cold, {sizes['large_mb']:,} MB, "
                                "interior_index=0",
        "large_lookup_16k": f"{sizes['large_lookups']} lookups, cold, {sizes['large_mb']:,} MB, 16 KiB blocks",
        "large_lookup_16k_off": f"{sizes['large_lookups']} lookups, cold, {sizes['large_mb']:,} MB, "
                                "16 KiB blocks, prefetch and index off",
    }[workload]


def seconds(value):
    if value < 1:
        return f"{value * 1000:.1f} ms" if value < 0.1 else f"{value * 1000:.0f} ms"
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def size(value):
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"


class Proxy:
    """bench/proxy.py as a child process."""

    def __init__(self, upstream, port):
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "proxy.py"), "--upstream", upstream, "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the proxy did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[-1])}"

    def configure(self, latency_ms, jitter_ms):
        request = urllib.request.Request(
            f"{self.url}/__config?latency_ms={latency_ms}&jitter_ms={jitter_ms}", method="POST", data=b""
        )
        urllib.request.urlopen(request, timeout=10).read()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Buckets:
    """Creates and empties benchmark buckets directly at the server (not through the proxy)."""

    def __init__(self, upstream):
        import boto3
        from botocore.config import Config

        self.client = boto3.client("s3", endpoint_url=upstream, config=Config(s3={"addressing_style": "path"}))

    def create(self, name):
        self.client.create_bucket(Bucket=name)

    def remove(self, name):
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        self.client.delete_bucket(Bucket=name)

    def stored(self, name, prefix):
        """Bytes of the objects under `prefix/` in bucket `name`: what the database costs to
        keep, history included."""
        paginator = self.client.get_paginator("list_objects_v2")
        return sum(item["Size"] for page in paginator.paginate(Bucket=name, Prefix=f"{prefix}/")
                   for item in page.get("Contents", []))


def make_image(path, megabytes):
    """A plain SQLite file of about `megabytes` MB (page size 4096) for (de)serialize."""
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, v BLOB NOT NULL)")
    rows = megabytes * 1_000_000 // 1040
    conn.execute(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
        "INSERT INTO t SELECT i, abs(random()), randomblob(1000) FROM c",
        (rows,),
    )
    conn.close()


def machine():
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or cpu
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}"


def versions(lib):
    found = {"Python": platform.python_version(), "SQLite (apsw)": apsw.sqlite_lib_version(), "apsw": apsw.apsw_version()}
    for package, label in (("sqlite_s3vfs", "sqlite-s3vfs"), ("moto", "moto"), ("boto3", "boto3")):
        try:
            from importlib.metadata import version

            found[label] = version(package.replace("_", "-"))
        except Exception:  # noqa: BLE001 - a version we cannot read is just not shown
            pass
    try:
        loader = apsw.Connection(":memory:")
        loader.enable_load_extension(True)
        loader.load_extension(str(lib))
        found["s3vfs"] = loader.execute("SELECT s3vfs_version()").fetchall()[0][0].split()[-1]
        loader.close()
    except apsw.Error:
        pass
    lib = Path(lib).resolve()
    if lib.is_relative_to(REPO / "target"):
        try:
            commit = subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
            ).stdout.strip()
            found["s3vfs"] = f"{found.get('s3vfs', '?')} ({commit}, {lib.parent.name} build)"
        except (OSError, subprocess.CalledProcessError):
            pass
    else:
        found["s3vfs"] = f"{found.get('s3vfs', '?')} ({os.environ.get('BENCH_LIB_SOURCE') or lib})"
    return found


def proxy_total(proxy_url):
    with urllib.request.urlopen(proxy_url + "/__stats", timeout=30) as response:
        return json.load(response)["total"]


def run_cell(spec, timeout):
    started = time.monotonic()
    before = proxy_total(spec["proxy"]) if spec["proxy"] else None
    try:
        process = subprocess.run(
            [sys.executable, str(HERE / "cell.py"), json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        # What the proxy counted until the kill (setup included): the work it got through.
        requests = proxy_total(spec["proxy"]) - before if before is not None else None
        return {"status": "timeout", "elapsed": time.monotonic() - started, "requests": requests}
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        return {"status": "failed", "stderr": process.stderr[-3000:], "returncode": process.returncode}
    result = json.loads(lines[-1])
    result["status"] = "unavailable" if "unavailable" in result else "ok"
    return result


# S3 Standard request prices, us-east-1, as listed in 2026-11 (USD per 1,000 requests): PUT, COPY,
# POST and LIST $0.005; GET and HEAD $0.0004; DELETE free. Transfer within a region is free.
PRICE_PER_1000 = {"get": 0.0004, "head": 0.0004, "list": 0.005, "put": 0.005, "put_if_absent": 0.005,
                  "delete": 0.0, "other": 0.005}


def operations(workload, sizes):
    """How many operations a workload is, for its cost per 1,000 operations: a transaction, a
    lookup, or (for the others) the whole workload."""
    return {
        "txns": sizes["txns"],
        "txns_large": sizes["txns"],
        "lookup_cold": sizes["lookups"],
        "lookup_warm": sizes["lookups"],
        "lookup_threads": sizes["lookups"],
        "lookup_connect": sizes["connects"],
        "lookup_disk": sizes["lookups"],
        "large_lookup": sizes["large_lookups"],
        "large_lookup_noindex": sizes["large_lookups"],
        "large_lookup_16k": sizes["large_lookups"],
        "large_lookup_16k_off": sizes["large_lookups"],
    }.get(workload, 1)


def cost_per_1000(result, workload, sizes):
    proxy = result.get("proxy")
    if proxy is None:
        return "–"
    dollars = sum(PRICE_PER_1000.get(kind, 0.005) * count for kind, count in proxy["requests"].items()) / 1000
    per_thousand = dollars / operations(workload, sizes) * 1000
    return f"${per_thousand:.4g}"


def cell_text(result):
    return {"timeout": "timeout", "failed": "FAILED", "unavailable": "n/a", "skipped": "skipped"}.get(
        result["status"]
    )


def table(setting, sizes, results, timeout):
    latency, jitter = setting
    header = ["workload", "system", "wall", "× s3vfs"] + [label for _, label in KIND_COLUMNS]
    header += ["requests", "block GETs", "up", "down", "stored", "$ / 1k ops", "peak RSS"]
    lines = [
        f"### {latency:g} ms ± {jitter:g} per request" if jitter else f"### {latency:g} ms per request",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|",
    ]
    for workload in WORKLOADS:
        reference = results.get(("s3vfs", workload), {})
        for system in SYSTEMS:
            result = results.get((system, workload))
            if result is None:
                continue
            cells = [workload_label(workload, sizes), SYSTEM_LABELS[system]]
            text = cell_text(result)
            if text is not None:
                if result["status"] == "timeout":
                    text = f"> {seconds(timeout)} (timeout)"
                    if result.get("requests") is not None:
                        cells += [text, "–"] + [""] * len(KIND_COLUMNS)
                        cells += [f"> {result['requests']:,} by then", "", "", "", "", "", ""]
                        lines.append("| " + " | ".join(cells) + " |")
                        continue
                cells += [text] + [""] * (len(header) - 3)
                lines.append("| " + " | ".join(cells) + " |")
                continue
            cells.append(seconds(result["wall"]))
            if reference.get("status") == "ok" and reference["wall"] > 0:
                cells.append(f"{result['wall'] / reference['wall']:.3g}")
            else:
                cells.append("–")
            proxy = result.get("proxy")
            if proxy is None:
                cells += ["–"] * len(KIND_COLUMNS) + ["–", "–", "–", "–", "–", "–"]
            else:
                cells += [str(proxy["requests"][kind]) for kind, _ in KIND_COLUMNS]
                blocks = str(proxy["block_gets"]) if system == "s3vfs" else "–"
                cells += [str(sum(proxy["requests"].values())), blocks, size(proxy["bytes_up"]),
                          size(proxy["bytes_down"])]
                cells.append(size(result["stored"]) if result.get("stored") is not None else "–")
                cells.append(cost_per_1000(result, workload, sizes))
            cells.append(size(result["max_rss_kib"] * 1024))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline(settings, systems, sizes, all_results):
    """Wall times side by side, one column per (system, latency) - the table for the README."""
    columns = [(system, setting) for setting in settings for system in systems]
    names = [f"{SYSTEM_LABELS[s]} @ {lat:g} ms" for s, (lat, _) in columns]
    lines = ["| workload | " + " | ".join(names) + " |", "|---|" + "---:|" * len(columns)]
    for workload in WORKLOADS:
        if not any((system, workload) in all_results[setting] for system, setting in columns):
            continue
        cells = []
        for system, setting in columns:
            result = all_results[setting].get((system, workload), {"status": "skipped"})
            text = cell_text(result)
            if result["status"] == "timeout":
                text = f"> {seconds(result['elapsed'])}"
                if result.get("requests") is not None:
                    text += f" (> {result['requests']:,} req)"
            if text is None:
                proxy = result.get("proxy")
                requests = f" ({sum(proxy['requests'].values()):,} req)" if proxy else ""
                text = seconds(result["wall"]) + requests
            cells.append(text)
        lines.append(f"| {workload_label(workload, sizes)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_setting(text):
    latency, _, jitter = text.partition(":")
    return float(latency), float(jitter or 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--latency", action="append", type=parse_setting, metavar="MS:JITTER",
                        help="per-request delay and jitter in ms (repeatable; default 20:5 and 0:0)")
    parser.add_argument("--lib", default=str(REPO / "target" / "release" / "libs3vfs.so"))
    parser.add_argument("--out", help="the Markdown file to write (default bench/RESULTS.md, "
                        "bench/RESULTS-quick.md with --quick)")
    parser.add_argument("--proxy-port", type=int, default=int(os.environ.get("BENCH_PROXY_PORT", "0")))
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset")
    parser.add_argument("--cell-timeout", type=float, help="seconds per cell (default 120 quick, 2400 full)")
    args = parser.parse_args()

    mode = "quick" if args.quick else "full"
    sizes = SIZES[mode]
    settings = args.latency or [(20.0, 5.0), (0.0, 0.0)]
    timeout = args.cell_timeout or (120 if args.quick else 2400)
    out = Path(args.out) if args.out else HERE / ("RESULTS-quick.md" if args.quick else "RESULTS.md")
    systems = [s for s in SYSTEMS if s in args.systems.split(",")]
    workloads = [w for w in WORKLOADS if w in args.workloads.split(",")]
    upstream = os.environ.get("AWS_ENDPOINT_URL")
    if not upstream or not os.environ.get("AWS_ACCESS_KEY_ID"):
        sys.exit('bench: start the local S3 server and export its settings: eval "$(scripts/s3-server.sh env)"')
    if "s3vfs" in systems and not os.path.isfile(args.lib):
        sys.exit(f"bench: {args.lib} does not exist; build it (cargo build --release --lib) or pass --lib")
    command = os.environ.get("BENCH_COMMAND") or "python3 bench/run.py " + shlex.join(sys.argv[1:])

    run_id = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="s3vfs-bench-"))
    image = work / "image-source.db"
    large_image = work / "large-source.db"
    began = time.monotonic()
    failures = []
    all_results = {}
    proxy = None
    buckets = Buckets(upstream)
    try:
        if "deserialize" in workloads or "serialize" in workloads:
            make_image(image, sizes["image_mb"])
        if any(workload.startswith("large_") for workload in workloads):
            make_image(large_image, sizes["large_mb"])
        proxy = Proxy(upstream, args.proxy_port)
        print(f"bench: {mode} mode, proxy {proxy.url} -> {upstream}, work dir {work}", file=sys.stderr)
        for setting in settings:
            proxy.configure(*setting)
            results = all_results[setting] = {}
            for system in systems:
                bucket = f"bench-{run_id}-{int(setting[0])}-{system.replace('-', '')}"
                local_dir = work / f"{bucket}-local"
                if system == "local":
                    local_dir.mkdir()
                else:
                    buckets.create(bucket)
                try:
                    for workload in workloads:
                        needed = NEEDS.get(workload)
                        needed_status = results.get((system, needed), {}).get("status")
                        if needed in workloads and needed_status != "ok":
                            unavailable = needed_status == "unavailable"
                            results[(system, workload)] = {"status": "unavailable" if unavailable else "skipped"}
                            continue
                        spec = {
                            "system": system,
                            "workload": workload,
                            "db": DATABASE[workload],
                            "bucket": bucket,
                            "proxy": None if system == "local" else proxy.url,
                            "lib": args.lib,
                            "local_dir": str(local_dir),
                            "rows": sizes["small_rows"] if workload == "insert_small" else sizes["big_rows"],
                            "big_rows": sizes["big_rows"],
                            "txns": sizes["txns"],
                            "lookups": sizes["lookups"],
                            "threads": sizes["threads"],
                            "connects": sizes["connects"],
                            "seed": 1,
                            "serialize_source": str(image),
                            "serialize_out": str(work / "serialized.db"),
                            "large_source": str(large_image),
                            "large_rows": sizes["large_mb"] * 1_000_000 // 1040,
                            "large_lookups": sizes["large_lookups"],
                            "large_ready": any(
                                DATABASE[done] == DATABASE[workload] and result.get("status") == "ok"
                                for (done_system, done), result in results.items() if done_system == system
                            ),
                            "params": dict(PARAMS.get(workload, {})),
                        }
                        if workload == "lookup_disk":
                            spec["params"]["cache_dir"] = str(work / f"{bucket}-disk-cache")
                        result = run_cell(spec, timeout)
                        if result["status"] == "ok" and system != "local":
                            result["stored"] = buckets.stored(bucket, DATABASE[workload])
                        results[(system, workload)] = result
                        shown = cell_text(result) or seconds(result["wall"])
                        print(f"bench: {setting[0]:g} ms  {system:13} {workload:13} {shown}", file=sys.stderr)
                        if result["status"] == "failed":
                            failures.append((setting, system, workload, result))
                            print(result["stderr"], file=sys.stderr)
                        if (result["status"] == "ok" and result.get("own_requests") is not None
                                and result["proxy"] is not None
                                and result["own_requests"] != sum(result["proxy"]["requests"].values())):
                            result["mismatch"] = True
                finally:
                    if system == "local":
                        shutil.rmtree(local_dir, ignore_errors=True)
                    else:
                        buckets.remove(bucket)
    finally:
        if proxy is not None:
            proxy.stop()
        shutil.rmtree(work, ignore_errors=True)

    elapsed = time.monotonic() - began
    found = versions(args.lib)
    mismatches = [
        f"{setting[0]:g} ms {workload}" for setting, results in all_results.items()
        for (system, workload), result in results.items() if result.get("mismatch")
    ]
    report = [
        f"# s3vfs benchmarks ({mode} mode)",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine()}",
        f"- Command: `{command}` ({elapsed / 60:.1f} min)",
        "- Versions: " + ", ".join(f"{name} {value}" for name, value in found.items()),
        "- Server: moto under gunicorn (scripts/s3-server.sh), one request at a time, tops out near "
        "300 requests/s here: read times beside request counts. Requests go through bench/proxy.py, "
        "which adds the per-request delay (uniform jitter) and counts them.",
        "- Systems: s3vfs ("
        + (f"URI parameters `{os.environ['BENCH_S3VFS_PARAMS']}`" if os.environ.get("BENCH_S3VFS_PARAMS")
           else "default 256 KiB blocks and `cache_size`")
        + ("; encrypted: a key in S3VFS_ENCRYPTION_KEY or S3VFS_KEY_FILE"
           if os.environ.get("S3VFS_ENCRYPTION_KEY") or os.environ.get("S3VFS_KEY_FILE") else "")
        + "); sqlite-s3vfs (PyPI, 4096-byte blocks, "
        "apsw + boto3, its journal also in S3, no locking); plain SQLite on a local file (the floor; "
        "(de)serialize is a file copy). All three through the same apsw SQLite, page size 4096, "
        "journal_mode DELETE.",
        "- Rows are (id INTEGER PRIMARY KEY, n INTEGER, v TEXT of 90 characters). Each cell is a new "
        "process; wall time covers the workload and opening its connection (warm lookups: the same "
        "lookups again, same connection); peak RSS is the cell process's high-water mark (VmHWM). "
        "× s3vfs is the wall time divided by s3vfs's. Threads: the lookups split over that many "
        "threads of the cell, each with its own connection, all at once. A connection each: every "
        "lookup opens and closes a connection of its own, as a web app per request.",
        "- $ / 1k ops: the requests' price at S3 Standard list prices (us-east-1, 2026-11: $0.005 "
        "per 1,000 PUT, COPY, POST or LIST; $0.0004 per 1,000 GET or HEAD; DELETE free; transfer "
        "within a region free), per 1,000 operations: a transaction of the txns workload, a lookup "
        "of the lookup workloads, and the whole workload otherwise.",
        "- Block GETs: the GETs of s3vfs's block objects among its requests (the rest are commit "
        "records, checkpoints and the head hint). New process, warm cache_dir: the lookups of the "
        "cold workload, after another process ran them with the same `cache_dir`. The large "
        "database is the (de)serialize table at the size shown (rows of 1,000 random bytes, a "
        "three-level B-tree), deserialized untimed by the first cell that needs it; sqlite-s3vfs "
        "is left out of it (deserializing 1 GB takes it over half an hour). Stored: the bytes of "
        "the database's objects in the bucket after the cell, history included."
        + (f" s3vfs URI parameters added to every cell: `{os.environ['BENCH_S3VFS_PARAMS']}`."
           if os.environ.get("BENCH_S3VFS_PARAMS") else ""),
        "",
        "## Headline: wall time (requests)",
        "",
        headline(settings, systems, sizes, all_results),
        "",
    ]
    for setting in settings:
        report += [table(setting, sizes, all_results[setting], timeout), ""]
    if any(r["status"] == "timeout" for results in all_results.values() for r in results.values()):
        report += [
            f"Cells marked timeout were stopped after {seconds(timeout)} (`--cell-timeout`); a timeout "
            "is not a failure. Where shown, the request count is what the proxy had counted by then, "
            "setup included.",
            "",
        ]
    if mismatches:
        report += [f"Note: s3vfs_stats() and the proxy disagree on the request count in: {', '.join(mismatches)}.", ""]
    else:
        report += ["s3vfs's own request counts (s3vfs_stats()) equal the proxy's in every s3vfs cell.", ""]
    text = "\n".join(report)
    print(text)
    out.write_text(text)
    print(f"bench: wrote {out}", file=sys.stderr)
    if failures:
        print(f"bench: {len(failures)} cell(s) FAILED", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
