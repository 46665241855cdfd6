#!/usr/bin/env bash
# What the demo and the tests need beyond the README's prerequisites (Rust, Python 3 and the
# sqlite3 CLI), installed where it belongs:
#
#   scripts/deps.sh python   # the Python packages of tests/requirements.txt, in .venv
#   scripts/deps.sh system   # the binding tests' toolchains (g++ and Node for better-sqlite3,
#                            # Go with go-sqlite3's source), rustfmt and clippy
#
# System packages are installed with apt-get when run as root and missing; otherwise one line
# says which to install. Python packages never touch the system interpreter.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_packages() {
  local missing=("$@")
  ((${#missing[@]})) || return 0
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "deps: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "deps: missing ${missing[*]}: install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}) and run make again" >&2
    exit 1
  fi
}

python_deps() {
  local python="${SYSTEM_PYTHON3:-python3}"
  if [[ ! -x .venv/bin/python ]]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
      rm -rf .venv
      # Debian and Ubuntu ship venv's pip separately.
      need_packages "python3-venv"
      "$python" -m venv .venv
    fi
  fi
  if ! cmp -s tests/requirements.txt .venv/.requirements; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt .venv/.requirements
  fi
}

system_deps() {
  local missing=()
  command -v g++ >/dev/null || missing+=(g++)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v go >/dev/null || missing+=(golang-go)
  [[ -d /usr/share/gocode/src/github.com/mattn/go-sqlite3 ]] || missing+=(golang-github-mattn-go-sqlite3-dev)
  command -v curl >/dev/null || missing+=(curl)
  # The binding test of Python's standard sqlite3 module runs Debian's interpreter, which can
  # load extensions.
  [[ -x /usr/bin/python3 ]] || missing+=(python3)
  need_packages "${missing[@]}"
  if command -v rustup >/dev/null; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
  fi
}

case "${1:-}" in
  python) python_deps ;;
  system) system_deps ;;
  *) echo "usage: scripts/deps.sh python|system" >&2; exit 2 ;;
esac
