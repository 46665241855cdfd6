"""Builds the Python wheel of s3vfs: packages/python/s3vfs with the extension library inside.

    python3 scripts/build-wheel.py LIBRARY OUT_DIR

The wheel is tagged py3-none-PLATFORM (the library is native code, Python's version does not
matter) and written with the standard library only, so building needs no network. Prints the
wheel's path.
"""
import base64
import hashlib
import re
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def version():
    text = (ROOT / "Cargo.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, re.M).group(1)


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def main():
    library, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    if not library.is_file():
        sys.exit(f"build-wheel: no library at {library}; build it first")
    platform = re.sub(r"[-.]", "_", sysconfig.get_platform())
    release = version()
    info = f"s3vfs-{release}.dist-info"
    files = {
        "s3vfs/__init__.py": (ROOT / "packages/python/s3vfs/__init__.py").read_bytes(),
        f"s3vfs/libs3vfs{library.suffix}": library.read_bytes(),
        f"{info}/METADATA": "\n".join([
            "Metadata-Version: 2.1",
            "Name: s3vfs",
            f"Version: {release}",
            "Summary: Keep a SQLite database in S3-compatible storage (a SQLite extension)",
            "License: MIT OR Apache-2.0",
            "Requires-Python: >=3.8",
            "Description-Content-Type: text/markdown",
            "",
            (ROOT / "packages/python/README.md").read_text(),
        ]).encode(),
        f"{info}/WHEEL": "\n".join([
            "Wheel-Version: 1.0",
            "Generator: s3vfs scripts/build-wheel.py",
            "Root-Is-Purelib: false",
            f"Tag: py3-none-{platform}",
            "",
        ]).encode(),
        f"{info}/LICENSE-MIT": (ROOT / "LICENSE-MIT").read_bytes(),
        f"{info}/LICENSE-APACHE": (ROOT / "LICENSE-APACHE").read_bytes(),
    }
    record = "\n".join([record_line(name, data) for name, data in files.items()] + [f"{info}/RECORD,,", ""])
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"s3vfs-{release}-py3-none-{platform}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            entry.external_attr = (0o755 if name.endswith(library.suffix) else 0o644) << 16
            archive.writestr(entry, data, zipfile.ZIP_DEFLATED)
        archive.writestr(zipfile.ZipInfo(f"{info}/RECORD", date_time=(2026, 1, 1, 0, 0, 0)), record)
    print(wheel)


if __name__ == "__main__":
    main()
