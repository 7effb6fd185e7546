#!/usr/bin/env bash
# Command line: print the path of a working Python X.Y interpreter, or say how to get one.
#
#   scripts/find_python.sh 3.13          ->  /root/.pyenv/versions/3.13.0/bin/python
#
# Looks, in order, at pythonX.Y on PATH (a pyenv shim there counts only if it really runs that
# version: pyenv's shim for a version that is installed but not selected fails), then at every
# pyenv version X.Y.* (newest first), then at /usr/local/bin and /usr/bin. Each candidate is run
# once to check its version. `make` calls this for the Python 3.11 and 3.13 test tiers; the
# PYTHON and PYTHON313 make variables override it.
set -uo pipefail

want=${1:?usage: $0 X.Y}
works() {
    [ -x "$1" ] || command -v "$1" >/dev/null 2>&1 || return 1
    [ "$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]
}

candidates=("python$want")
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
if [ -d "$pyenv_root/versions" ]; then
    while IFS= read -r dir; do
        candidates+=("$dir/bin/python")
    done < <(ls -d "$pyenv_root/versions/$want".* 2>/dev/null | sort -rV)
fi
candidates+=("/usr/local/bin/python$want" "/usr/bin/python$want")

for c in "${candidates[@]}"; do
    if works "$c"; then
        command -v "$c"
        exit 0
    fi
done
echo "find_python: Python $want is needed and was not found (looked for python$want on PATH, in pyenv's" \
     "versions and in /usr/bin): install it (e.g. 'pyenv install $want' or 'apt-get install python$want')," \
     "or name one with PYTHON=/path/to/python$want (PYTHON313= for 3.13)." >&2
exit 2
