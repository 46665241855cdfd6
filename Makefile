# s3vfs: build the extension, run a demo and the tests against a local S3 server.
#   make demo   build, start the local S3 server, and run a demo through the sqlite3 CLI
#   make test   every test: Rust unit and integration tests, sql-tests, Python tests
#   make lint   rustfmt and clippy

UNAME := $(shell uname -s)
EXT := $(if $(filter Darwin,$(UNAME)),dylib,so)
LIB := target/debug/libs3vfs.$(EXT)
SERVER := bash scripts/s3-server.sh
WITH_SERVER := eval "$$($(SERVER) env)" && export S3VFS_LIB=$(CURDIR)/$(LIB) &&

.PHONY: all build demo server stop test test-rust test-sql test-python lint clean

all: build

build:
	cargo build --lib

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

clean:
	cargo clean
