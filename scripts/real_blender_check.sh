#!/usr/bin/env bash
# Command line: install the built zip into real Blender binaries and make one relief in each.
#
#   scripts/real_blender_check.sh [SUITE...]        (default: trixie sid)
#
# For each Debian suite (trixie: Debian 13's Blender 4.3, Python 3.13; sid: Debian unstable's
# Blender 5.2 LTS, Python 3.14), through ../shared/tools/real-blender (REAL_BLENDER_TOOL= to
# point elsewhere; `real-blender setup` makes its root once, about 6 minutes):
#   1. `blender --command extension install-file -r user_default --enable` the linux-x64 zip
#      from dist/ (`make dist` first), into a fresh user folder under build/;
#   2. `blender -b --online-mode --python scripts/real_blender_relief.py`: one relief from the
#      stand-in, its Strength slider doubled, the .blend saved (scripts/real_blender_relief.py);
#   3. `blender -c onemin3d --help`, then `blender -c onemin3d PHOTOS/ --output-dir DIR --json …`
#      (the key from ONEMIN_API_KEY): exit 0, one .blend per photo, the report's 2 converted;
#      and `blender --offline-mode -c onemin3d …`: exit 2, nothing sent.
# Prints each Blender's RESULT line; exits 1 if any step failed on any suite.
set -uo pipefail
cd "$(dirname "$0")/.."
tool=${REAL_BLENDER_TOOL:-../shared/tools/real-blender}
zip=$(ls dist/onemin3d-*-linux_x64.zip 2>/dev/null | head -1)
[ -n "$zip" ] || { echo "real_blender_check: no dist/*-linux_x64.zip: run 'make dist' first" >&2; exit 2; }
py=${PY:-.venv/bin/python}
mkdir -p build/real-blender
"$py" scripts/fake_onemin_server.py --port 0 --result depth > build/real-blender/stand-in.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 300); do grep -q listening build/real-blender/stand-in.log && break; sleep 0.1; done  # 30 s: a loaded machine is slow to start it
base_url=$(sed -n 's/^listening on //p' build/real-blender/stand-in.log | head -1)
[ -n "$base_url" ] || { echo "real_blender_check: the stand-in did not start" >&2; exit 2; }
"$py" -c "import sys; sys.path.insert(0, 'tests/blender'); from pathlib import Path; \
from addon_harness import make_photo; make_photo(Path('build/real-blender/photo.jpg')); \
make_photo(Path('build/real-blender/photos/dress.jpg')); make_photo(Path('build/real-blender/photos/shoe.png'), seed=2)"

status=0
for suite in "${@:-trixie sid}"; do
  for s in $suite; do
    user=build/real-blender/user-$s
    rm -rf "$user" "build/real-blender/results-$s"
    export REAL_BLENDER_SUITE=$s BLENDER_USER_RESOURCES=/project/$user
    if ! REAL_BLENDER_SUITE=$s "$tool" root >/dev/null 2>&1; then
      echo "real_blender_check: no $s root: run 'REAL_BLENDER_SUITE=$s $tool setup' (about 6 minutes)" >&2
      status=1; continue
    fi
    echo "== $s: install-file --enable $zip"
    "$tool" run -- --command extension install-file -r user_default --enable "/project/$zip" 2>&1 \
      | grep -v -i "list of mounted file-systems" | tail -3
    echo "== $s: one relief with blender -b"
    out=$("$tool" run -- -b --online-mode --python /project/scripts/real_blender_relief.py -- "$base_url" \
          /project/build/real-blender/photo.jpg "/project/build/real-blender/relief-$s.blend" \
          "/project/build/real-blender/results-$s" 2>&1)
    rc=$?
    echo "$out" | grep -E "^RESULT|Traceback|Error" || echo "$out" | tail -20
    if [ $rc -ne 0 ] || ! grep -q '^RESULT' <<<"$out" || grep -q Traceback <<<"$out"; then
      echo "== $s: FAILED" >&2; status=1
    else
      echo "== $s: relief passed"
    fi
    echo "== $s: blender -c onemin3d"
    cli=build/real-blender/cli-$s
    rm -rf "$cli"
    help=$("$tool" run -- -c onemin3d --help 2>&1)
    if ! grep -q -- "--output-dir" <<<"$help" || ! grep -q "blender -c onemin3d" <<<"$help"; then
      echo "$help" | tail -20; echo "== $s: blender -c onemin3d --help FAILED" >&2; status=1
    fi
    out=$(ONEMIN_API_KEY=test-key-0123456789 "$tool" run -- -c onemin3d /project/build/real-blender/photos \
          --output-dir "/project/$cli" --base-url "$base_url" --resolution 48 --json "/project/$cli/report.json" 2>&1)
    rc=$?
    echo "$out" | tail -8
    converted=$("$py" -c "import json,sys; print(json.load(open(sys.argv[1]))['summary']['converted'])" \
                "$cli/report.json" 2>/dev/null)
    if [ $rc -ne 0 ] || [ ! -s "$cli/dress.blend" ] || [ ! -s "$cli/shoe.blend" ] || [ "$converted" != 2 ] \
        || grep -q Traceback <<<"$out"; then
      echo "== $s: blender -c onemin3d FAILED (exit $rc, converted ${converted:-?})" >&2; status=1
    else
      echo "== $s: blender -c onemin3d passed (exit 0, dress.blend and shoe.blend, 2 converted)"
    fi
    out=$(ONEMIN_API_KEY=test-key-0123456789 "$tool" run -- --offline-mode -c onemin3d \
          /project/build/real-blender/photos --output-dir "/project/$cli-offline" --base-url "$base_url" 2>&1)
    rc=$?
    if [ $rc -ne 2 ] || ! grep -q -- "--offline-mode" <<<"$out"; then
      echo "$out" | tail -5; echo "== $s: blender --offline-mode -c onemin3d FAILED (exit $rc, not 2)" >&2; status=1
    else
      echo "== $s: blender --offline-mode -c onemin3d refused (exit 2)"
    fi
  done
done
exit $status
