# s3vfs: build the extension, run a demo and the tests against a local S3 server.
#   make demo   build, start the local S3 server, and run a demo through the sqlite3 CLI
#   make test   every test: Rust unit and integration tests, sql-tests, Python tests, bindings,
#               and the benchmark in quick mode as a smoke test (make bench-smoke); installs
#               what they need first (scripts/deps.sh: Python packages into .venv, system
#               packages when root)
#   make stop   stop the local S3 server
#   make test-bindings   a write-then-reopen round trip from each binding the README shows
#   make lint   rustfmt and clippy
#   make wheel / make npm-package / make dist   packages of the release build under dist/: the
#               Python wheel, the npm package, and an archive of the library with README and
#               licences (tests/python/test_packages.py builds and installs them from the debug
#               build)
#   make bench        release build; s3vfs, sqlite-s3vfs and a local file behind a latency proxy
#                     (bench/run.py); writes bench/RESULTS.md. QUICK=1 (or make bench-quick):
#                     small sizes, bench/RESULTS-quick.md. BENCH_ARGS: more options of run.py.

UNAME := $(shell uname -s)
EXT := $(if $(filter Darwin,$(UNAME)),dylib,so)
LIB := target/debug/libs3vfs.$(EXT)
SERVER := bash scripts/s3-server.sh
WITH_SERVER := eval "$$($(SERVER) env)" && export S3VFS_LIB=$(CURDIR)/$(LIB) &&
RELEASE_LIB := target/release/libs3vfs.$(EXT)
# The project's virtual environment (scripts/deps.sh python): the tests, the local S3 server
# and the benchmarks run in it.
PYTHON ?= $(CURDIR)/.venv/bin/python
export PYTHON
PYTHON_DEPS := .venv/.requirements

# tests/node's better-sqlite3, built from source with URI filenames on (its bundled SQLite has
# them off, which would ignore `vfs=s3vfs`). node-gyp takes the headers of the node that runs
# it when that install has them, rather than downloading them; JOBS=max compiles in parallel.
NODE_MODULES := tests/node/node_modules/.package-lock.json
NODE_PREFIX = $(shell node -p 'require("path").resolve(process.execPath, "../..")')
NODE_HEADERS = $(if $(npm_config_nodedir),,$(if $(wildcard $(NODE_PREFIX)/include/node/node_version.h),npm_config_nodedir=$(NODE_PREFIX)))

.PHONY: wheel npm-package dist all build build-release demo server stop test test-rust test-sql test-python test-bindings node-deps system-deps lint bench bench-quick bench-smoke bench-deps clean

all: build

build:
	cargo build --lib

build-release:
	cargo build --release --lib

$(PYTHON_DEPS): tests/requirements.txt
	bash scripts/deps.sh python

system-deps:
	bash scripts/deps.sh system

server: $(PYTHON_DEPS)
	$(SERVER) install
	$(SERVER) start

stop:
	$(SERVER) stop

demo: build server
	$(WITH_SERVER) bash scripts/demo.sh

# What the packages carry and where they go: the release build into dist/ by default
# (tests/python/test_packages.py passes PACKAGE_BUILD=build PACKAGE_LIB=<the debug build>).
PACKAGE_BUILD ?= build-release
PACKAGE_LIB ?= $(RELEASE_LIB)
DIST ?= dist

wheel: $(PACKAGE_BUILD)
	python3 scripts/build-wheel.py $(PACKAGE_LIB) $(DIST)

npm-package: $(PACKAGE_BUILD)
	bash scripts/build-npm.sh $(PACKAGE_LIB) $(DIST)

dist: $(PACKAGE_BUILD)
	bash scripts/dist.sh $(PACKAGE_LIB) $(DIST)

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

test: system-deps build server lint $(NODE_MODULES)
	$(WITH_SERVER) cargo test
	$(WITH_SERVER) bash scripts/run-sql-tests.sh
	$(WITH_SERVER) $(PYTHON) -m pytest -q tests/python
	$(WITH_SERVER) bash scripts/run-binding-tests.sh
	$(MAKE) bench-smoke

test-rust: build server
	$(WITH_SERVER) cargo test

test-sql: build server
	$(WITH_SERVER) bash scripts/run-sql-tests.sh

test-python: build server
	$(WITH_SERVER) $(PYTHON) -m pytest -q tests/python

test-bindings: build server $(NODE_MODULES)
	$(WITH_SERVER) bash scripts/run-binding-tests.sh

node-deps: $(NODE_MODULES)

$(NODE_MODULES): tests/node/package.json tests/node/package-lock.json | system-deps
	cd tests/node && $(NODE_HEADERS) JOBS=max CFLAGS=-DSQLITE_USE_URI=1 npm ci --build-from-source --no-audit --no-fund

bench-deps: $(PYTHON_DEPS)

# The proxy (bench/proxy.py) is started and stopped by bench/run.py; BENCH_PROXY_PORT picks
# its port (default: any free one), S3VFS_TEST_PORT the local S3 server's.
bench: build-release server bench-deps
	eval "$$($(SERVER) env)" && BENCH_COMMAND="make bench$(if $(QUICK), QUICK=1)" \
	  $(PYTHON) bench/run.py --lib $(CURDIR)/$(RELEASE_LIB) $(if $(QUICK),--quick) $(BENCH_ARGS)

bench-quick:
	$(MAKE) bench QUICK=1

# The benchmark as a test: quick sizes at 0 ms on the debug library, every cell must work
# (times are not checked). Part of `make test`, so that `make bench` keeps working.
bench-smoke: build server bench-deps
	eval "$$($(SERVER) env)" && $(PYTHON) bench/run.py --quick --latency 0:0 \
	  --lib $(CURDIR)/$(LIB) --out $${TMPDIR:-/tmp}/s3vfs-bench-smoke.md > /dev/null

clean:
	cargo clean
