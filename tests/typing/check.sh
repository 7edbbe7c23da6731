#!/usr/bin/env bash
# Static type checks (CI and tests/test_typing.py): the library with mypy --strict and
# pyright, and tests/typing/check_lazy.py (assert_type cases for @lazy) with both.
# Run from anywhere; uses the python/mypy/pyright of the active environment, or of
# $PYTHON's environment when set.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="$(command -v "${PYTHON:-python}")"
BIN="$(dirname "$PY")"
"$BIN/mypy" lazyapply
"$BIN/mypy" --config-file tests/typing/mypy.ini tests/typing/check_lazy.py
"$BIN/pyright" --pythonpath "$PY" lazyapply
"$BIN/pyright" --pythonpath "$PY" -p tests/typing/pyrightconfig.json
