"""s3vfs: keep a SQLite database in S3-compatible storage.

    import sqlite3, s3vfs
    loader = sqlite3.connect(":memory:")
    s3vfs.load(loader)          # registers the VFS "s3vfs" for the whole process
    db = sqlite3.connect("file:shop.db?vfs=s3vfs&bucket=acme", uri=True)

`load` works with the standard sqlite3 module and with apsw (any connection object with
`enable_load_extension` and `load_extension`). The interpreter's SQLite must allow loading
extensions: python.org and Debian builds do; some others (pyenv without
--enable-loadable-sqlite-extensions, macOS's system Python) do not, and apsw always does.
"""
from pathlib import Path

__all__ = ["loadable_path", "load"]


def loadable_path() -> str:
    """The path of the s3vfs extension shipped in this package, without its file suffix, as
    SQLite's load_extension takes it."""
    here = Path(__file__).resolve().parent
    for candidate in sorted(here.glob("libs3vfs.*")):
        if candidate.suffix in (".so", ".dylib", ".dll"):
            return str(candidate.with_suffix(""))
    raise FileNotFoundError(f"the s3vfs library is missing from {here}")


def load(connection) -> None:
    """Loads s3vfs into `connection` (sqlite3 or apsw): the VFS "s3vfs" and the SQL functions
    are then registered for every connection of the process's SQLite. Extension loading is
    switched off again afterwards."""
    connection.enable_load_extension(True)
    try:
        connection.load_extension(loadable_path())
    finally:
        connection.enable_load_extension(False)
