# s3vfs: build the extension, run a demo and the tests against a local S3 server.
#   make demo   build, start the local S3 server, and run a demo through the sqlite3 CLI
#   make test   every test: Rust unit and integration tests, sql-tests, Python tests
#   make lint   rustfmt and clippy
#   make bench        release build; s3vfs, sqlite-s3vfs and a local file behind a latency proxy
#                     (bench/run.py); writes bench/RESULTS.md. QUICK=1 (or make bench-quick):
#                     small sizes, bench/RESULTS-quick.md. BENCH_ARGS: more options of run.py.

UNAME := $(shell uname -s)
EXT := $(if $(filter Darwin,$(UNAME)),dylib,so)
LIB := target/debug/libs3vfs.$(EXT)
SERVER := bash scripts/s3-server.sh
WITH_SERVER := eval "$$($(SERVER) env)" && export S3VFS_LIB=$(CURDIR)/$(LIB) &&
RELEASE_LIB := target/release/libs3vfs.$(EXT)
PYTHON ?= python3

.PHONY: all build build-release demo server stop test test-rust test-sql test-python lint bench bench-quick bench-deps clean

all: build

build:
	cargo build --lib

build-release:
	cargo build --release --lib

server:
	$(SERVER) install
	$(SERVER) start

stop:
	$(SERVER) stop

demo: build server
	$(WITH_SERVER) bash scripts/demo.sh

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

test: build server lint
	$(WITH_SERVER) cargo test
	$(WITH_SERVER) bash scripts/run-sql-tests.sh
	$(WITH_SERVER) python3 -m pytest -q tests/python

test-rust: build server
	$(WITH_SERVER) cargo test

test-sql: build server
	$(WITH_SERVER) bash scripts/run-sql-tests.sh

test-python: build server
	$(WITH_SERVER) python3 -m pytest -q tests/python

bench-deps:
	$(PYTHON) -c 'import apsw, boto3, sqlite_s3vfs' 2>/dev/null || $(PYTHON) -m pip install -q apsw boto3 sqlite-s3vfs

# The proxy (bench/proxy.py) is started and stopped by bench/run.py; BENCH_PROXY_PORT picks
# its port (default: any free one), S3VFS_TEST_PORT the local S3 server's.
bench: build-release server bench-deps
	eval "$$($(SERVER) env)" && BENCH_COMMAND="make bench$(if $(QUICK), QUICK=1)" \
	  $(PYTHON) bench/run.py --lib $(CURDIR)/$(RELEASE_LIB) $(if $(QUICK),--quick) $(BENCH_ARGS)

bench-quick:
	$(MAKE) bench QUICK=1

clean:
	cargo clean
