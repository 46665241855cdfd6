"""The disk cache (cache_dir=): processes of a host share block files in one directory, and a
damaged, torn or unusable cache never changes what a query returns. Every reader runs in a
fresh worker process, against the local S3 server."""
import hashlib
import os
import subprocess
from pathlib import Path

from s3vfs_util import connect, finish_worker, run_worker, unique_name, worker_command, worker_env

ROWS = 300


def make_table(name, generation):
    conn = connect(name, block_size=4096)
    conn.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, val TEXT NOT NULL)")
    conn.execute("BEGIN")
    conn.execute("DELETE FROM t")
    conn.executemany(
        "INSERT INTO t(id, val) VALUES(?, ?)",
        [(i, f"{generation}-{i}-" + "x" * 400) for i in range(1, ROWS + 1)],
    )
    conn.execute("COMMIT")
    rows = conn.execute("SELECT id, val FROM t ORDER BY id").fetchall()
    conn.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def block_files(cache_dir):
    return sorted(path for path in Path(cache_dir).glob("*/*") if path.parent.name != "tmp")


def test_processes_share_the_directory_while_a_writer_commits(tmp_path):
    name = unique_name("disk-shared")
    cache_dir = str(tmp_path / "cache")
    expected = make_table(name, "first")
    cold = run_worker("cached_read", name, cache_dir)
    assert cold["digest"] == expected and cold["rows"] == ROWS
    assert cold["requests"]["get"] > 30, cold
    files = block_files(cache_dir)
    assert len(files) >= 30, "the blocks the first process fetched are on disk"
    # A new process: the open and its freshness checks, no block GET.
    warm = run_worker("cached_read", name, cache_dir)
    assert warm["digest"] == expected, warm
    assert warm["disk"]["hits"] >= 30 and warm["disk"]["misses"] == 0, warm
    opening = 4  # head, LIST, newest record, its checkpoint
    assert warm["requests"]["get"] + warm["requests"]["list"] <= opening + 2, warm
    # Another process commits: readers get the new blocks, never the old ones.
    expected = make_table(name, "second")
    readers = [subprocess.Popen(worker_command("cached_read", name, cache_dir), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=worker_env()) for _ in range(3)]
    results = [finish_worker(reader, timeout=60) for reader in readers]
    assert all(result["digest"] == expected for result in results), results


def test_damaged_and_torn_files_are_misses_and_are_replaced(tmp_path):
    name = unique_name("disk-damaged")
    cache_dir = tmp_path / "cache"
    expected = make_table(name, "only")
    assert run_worker("cached_read", name, str(cache_dir))["digest"] == expected
    files = block_files(cache_dir)
    assert len(files) >= 30
    # A byte changed on disk; a file cut short (a crashed host); a temporary file of a process
    # killed while writing.
    changed, cut = files[3], files[7]
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    changed.write_bytes(bytes(data))
    cut.write_bytes(cut.read_bytes()[: len(cut.read_bytes()) // 3])
    (cache_dir / "tmp" / "4242-deadbeef-0").write_bytes(b"S3VFSBK1 the start of a block")
    result = run_worker("cached_read", name, str(cache_dir))
    assert result["digest"] == expected, result
    assert result["disk"]["misses"] == 2, result
    assert result["requests"]["get"] >= 2, result
    # Both were fetched again and written whole: the next process finds every block.
    again = run_worker("cached_read", name, str(cache_dir))
    assert again["digest"] == expected and again["disk"]["misses"] == 0, again


def test_an_unusable_directory_reads_from_the_store_and_says_so_once(tmp_path):
    name = unique_name("disk-unusable")
    expected = make_table(name, "only")
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("a file where the cache directory should be")
    cache_dir = str(not_a_directory / "cache")
    proc = subprocess.Popen(worker_command("cached_read", name, cache_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=worker_env())
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert '"digest": "' + expected in out, out
    messages = [line for line in err.splitlines() if "disk cache" in line]
    assert len(messages) == 1 and "is not used" in messages[0] and cache_dir in messages[0], err
    # A budget smaller than one block: the same.
    env = dict(worker_env(), S3VFS_DISK_CACHE_SIZE="1000")
    proc = subprocess.Popen(worker_command("cached_read", name, str(tmp_path / "small")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and '"digest": "' + expected in out, err
    assert "smaller than one block" in err, err
