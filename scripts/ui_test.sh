#!/usr/bin/env bash
# `make ui-test`: the add-on in a real Blender window, driven through its states, screenshotted.
#
#   scripts/ui_test.sh [SUITE...]       the UI tier on each Debian suite (default: trixie sid)
#   scripts/ui_test.sh setup SUITE      only make that suite's root
#   BLENDER=/path/to/blender scripts/ui_test.sh
#                                       the UI tier on that binary instead (no root; Xvfb, xdotool
#                                       and ImageMagick's `import` must then be on the PATH)
#
# Where Blender comes from, unless $BLENDER is set: a Debian root per suite, made here once with
# debootstrap (about 2 GB and a few minutes each, 1.5 to 4.5 here; the time is printed), holding
# Debian's own Blender, Xvfb, xdotool, ImageMagick and the python3-numpy/-requests/-pil/-cattr
# Debian's Blender runs on:
#   trixie  Debian 13's Blender 4.3 (Python 3.13)
#   sid     Debian unstable's Blender 5.2 LTS (Python 3.14; its archive snapshot may be past its
#           validity date, so apt is told not to check that)
# The roots live in ${ONEMIN3D_UI_ROOTS:-~/.cache/onemin3d-ui-roots}/<suite> (outside the
# repository: `make clean` does not cost a rebuild). ONEMIN3D_UI_ROOT_TRIXIE=DIR (or _SID) uses an
# existing root with Blender in it instead. Every run inside a root is in a private mount
# namespace (unshare), so nothing stays mounted afterwards. Making a root needs root and apt.
#
# On each binary, with a fresh user folder under build/ui-test/<suite>/:
#   1. `blender --command extension install-file -r user_default --enable` the linux-x64 zip
#      from dist/ (`make dist` first; `make ui-test` does);
#   2. the GUI on a virtual screen against the stand-in (scripts/fake_onemin_server.py), driven
#      by scripts/ui_drive.py through: no key and offline, ready, running with progress,
#      imported with history, failed, the cost line, Trellis, Remove Background, a cut-out, a tear,
#      Export for Web / for AR, the preferences and the options, at 1x and 2x UI scale; a
#      screenshot of each in build/ui-test/<suite>/shots/, and the longest main-thread stall (a
#      10 ms timer) and the Generate call's time while a job runs, in shots/ui.json;
#   3. `blender -b --python scripts/image_to_3d.py -- …`: one photo converted on the same binary;
#   4. `blender -c onemin3d --help`, once the extension registers that command (else "skipped").
# Fails on any Python traceback in Blender's output. ONEMIN3D_UI_DOCS=1 also copies the README's
# screenshots into docs/img/ (from the last suite run).
set -uo pipefail
cd "$(dirname "$0")/.."
PROJECT=$PWD
PY=${PY:-.venv/bin/python}
ROOTS=${ONEMIN3D_UI_ROOTS:-${XDG_CACHE_HOME:-$HOME/.cache}/onemin3d-ui-roots}
# python3-cattr: Blender 5.2's Extensions add-on imports cattrs when it registers
PKGS="blender xvfb xauth xdotool imagemagick python3-numpy python3-requests python3-pil python3-cattr libgl1-mesa-dri"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
STAMP=.onemin3d-ui-root

root_of() {
  local var="ONEMIN3D_UI_ROOT_${1^^}"
  echo "${!var:-$ROOTS/$1}"
}

root_ready() {
  local root; root=$(root_of "$1")
  [ -x "$root/usr/bin/blender" ] || return 1
  # A root we made is ready once its stamp is written; a root named by the environment is taken as is.
  local var="ONEMIN3D_UI_ROOT_${1^^}"
  [ -n "${!var:-}" ] || [ -e "$root/$STAMP" ]
}

# ensure_packages SUITE: install what PKGS lists and the root lacks (a root made by an older list)
ensure_packages() {
  local root missing; root=$(root_of "$1")
  missing=$(in_root "$root" "for p in $PKGS; do dpkg-query -W -f='\${Status}\n' \$p 2>/dev/null | grep -q '^install ok installed' || echo \$p; done" | xargs)
  [ -z "$missing" ] && return 0
  echo "ui-test: installing $missing into the $1 root"
  in_root "$root" "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing" \
    >> "$root.debootstrap.log" 2>&1 || { echo "ui-test: apt-get in the $1 root failed, see $root.debootstrap.log" >&2; return 1; }
}

# in_root ROOT COMMAND: run the bash COMMAND inside ROOT, in /project (this repository), with /proc
# and /dev, in a mount namespace of its own: the mounts end with the command.
in_root() {
  unshare --mount --propagation private -- bash -c '
    root=$1 project=$2 cmd=$3
    mount --bind /proc "$root/proc" && mount --rbind /dev "$root/dev" || exit 125
    mkdir -p "$root/project" && mount --bind "$project" "$root/project" || exit 125
    exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
      ${BLENDER_USER_RESOURCES:+BLENDER_USER_RESOURCES=$BLENDER_USER_RESOURCES} \
      bash -c "cd /project && $cmd"' _ "$1" "$PROJECT" "$2"
}

setup_root() {
  local suite=$1 root start
  root=$(root_of "$suite")
  if root_ready "$suite"; then ensure_packages "$suite"; return; fi
  [ "$(id -u)" = 0 ] || { echo "ui-test: making the $suite root needs root (debootstrap, chroot)" >&2; return 1; }
  if [ -e "$root" ]; then
    # a root left half made by an interrupted setup; never delete through a leftover mount
    if findmnt -rn -o TARGET | grep -q "^$root/"; then
      echo "ui-test: $root has mounts under it; unmount them, then run again" >&2; return 1
    fi
    rm -rf "$root"
  fi
  start=$SECONDS
  echo "ui-test: making the $suite root in $root (debootstrap + Debian's Blender: a few minutes and 2 GB, once)"
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; } || return 1
  mkdir -p "$(dirname "$root")"
  unshare --mount --propagation private -- debootstrap --variant=minbase "$suite" "$root" "$MIRROR" \
    > "$root.debootstrap.log" 2>&1 || { echo "ui-test: debootstrap failed, see $root.debootstrap.log" >&2; return 1; }
  echo 'Acquire::Check-Valid-Until "false";' > "$root/etc/apt/apt.conf.d/99no-valid-until"
  in_root "$root" "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PKGS" \
    >> "$root.debootstrap.log" 2>&1 || { echo "ui-test: apt-get in the $suite root failed, see $root.debootstrap.log" >&2; return 1; }
  touch "$root/$STAMP"
  echo "ui-test: the $suite root is ready ($(in_root "$root" "blender --version 2>/dev/null | head -1"), $(du -sh "$root" | cut -f1)) in $((SECONDS - start)) s"
}

if [ "${1:-}" = setup ]; then
  setup_root "${2:?usage: scripts/ui_test.sh setup SUITE}"; exit $?
fi

if [ -n "${BLENDER:-}" ]; then
  command -v "$BLENDER" >/dev/null || { echo "ui-test: BLENDER=$BLENDER is not a program" >&2; exit 2; }
  for tool in Xvfb xdotool import; do
    command -v $tool >/dev/null || { echo "ui-test: with \$BLENDER, $tool must be installed (Xvfb, xdotool, ImageMagick)" >&2; exit 2; }
  done
fi

SCREEN=${UI_SCREEN:-1600x1200}
zip=$(ls dist/onemin3d-*-linux_x64.zip 2>/dev/null | head -1)
[ -n "$zip" ] || { echo "ui-test: no dist/*-linux_x64.zip: run 'make dist' first" >&2; exit 2; }
mkdir -p build/ui-test

# the stand-in, on the host; a root shares its network
"$PY" -u scripts/fake_onemin_server.py --port 0 --result depth > build/ui-test/stand-in.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 300); do grep -q listening build/ui-test/stand-in.log && break; sleep 0.1; done
base_url=$(sed -n 's/^listening on //p' build/ui-test/stand-in.log | head -1)
[ -n "$base_url" ] || { echo "ui-test: the stand-in did not start" >&2; exit 2; }
KEY=test-key-0123456789

# run_in LABEL COMMAND: a bash command with `blender` on its PATH, in the project folder, which it
# sees as $P: the suite's root (P=/project), or this machine with $BLENDER (P=this folder).
run_in() {
  local label=$1 cmd=$2
  if [ -n "${BLENDER:-}" ]; then
    local bindir; bindir=$(mktemp -d); ln -s "$(realpath "$(command -v "$BLENDER")")" "$bindir/blender"
    P=$PROJECT PATH=$bindir:$PATH bash -c "P=$PROJECT; $cmd"; local rc=$?
    rm -rf "$bindir"; return $rc
  fi
  in_root "$(root_of "$label")" "P=/project; $cmd"
}

# The GUI on a virtual screen of its own, driven by scripts/ui_drive.py (at most 5 minutes).
GUI_CMD='
  d=90; while [ -e /tmp/.X$d-lock ]; do d=$((d + 1)); done
  Xvfb :$d -screen 0 '"${SCREEN}"'x24 -nolisten tcp >"$P/$OUT/xvfb.log" 2>&1 & xp=$!
  for _ in $(seq 100); do [ -e /tmp/.X11-unix/X$d ] && break; sleep 0.1; done
  export DISPLAY=:$d UI_SCREEN='"${SCREEN}"'
  timeout 300 blender --python "$P/scripts/ui_drive.py" -- --base-url '"$base_url"' \
    --photo "$P/examples/astronaut.jpg" --out "$P/$OUT/shots" --key '"$KEY"' >"$P/$OUT/gui.log" 2>&1
  rc=$?; kill $xp; wait $xp 2>/dev/null; exit $rc'

status=0
ran=()
suites=("$@")
[ -n "${BLENDER:-}" ] && suites=(blender)
[ ${#suites[@]} -gt 0 ] || suites=(trixie sid)
for suite in "${suites[@]}"; do
  start=$SECONDS
  if [ -z "${BLENDER:-}" ]; then setup_root "$suite" || { status=1; continue; }; fi
  OUT=build/ui-test/$suite
  rm -rf "$OUT" && mkdir -p "$OUT/shots"
  export BLENDER_USER_RESOURCES=/project/$OUT/user
  [ -n "${BLENDER:-}" ] && export BLENDER_USER_RESOURCES=$PROJECT/$OUT/user
  fail() { echo "== $suite: FAILED: $1" >&2; status=1; }
  version=$(run_in "$suite" 'blender --version 2>/dev/null | head -1')
  echo "== $suite: $version"

  echo "-- install-file --enable $zip"
  run_in "$suite" "blender --command extension install-file -r user_default --enable \"\$P/$zip\"" \
    > "$OUT/install.log" 2>&1 || fail "install-file (see $OUT/install.log)"
  grep -v -i "list of mounted" "$OUT/install.log" | tail -2

  echo "-- the GUI, driven through its states (build/ui-test/$suite/shots/)"
  run_in "$suite" "OUT=$OUT; $GUI_CMD" || fail "the GUI run (see $OUT/gui.log)"
  grep '^RESULT' "$OUT/gui.log" | cut -c1-400
  "$PY" - "$OUT/shots/ui.json" <<'PYEOF' || fail "the GUI run's report"
import json, sys
r = json.load(open(sys.argv[1]))
s = r.get("stall_ms", {})
print(f"   longest main-thread stall while the job was on the network: {s.get('network')} ms "
      f"(median tick {s.get('median_tick')} ms over {s.get('ticks')} ticks); the import: {s.get('import')} ms; "
      f"the click on Generate: {s.get('click')} ms")
print(f"   the Generate operator call: {r.get('generate_call_ms')} ms")
print(f"   screenshots: {', '.join(sorted(r['shots']))}")
sys.exit(0 if r.get("ok") else 1)
PYEOF

  echo "-- blender -b --python scripts/image_to_3d.py -- …"
  run_in "$suite" "ONEMIN_API_KEY=$KEY blender -b --factory-startup --python-exit-code 1 \
    --python \"\$P/scripts/image_to_3d.py\" -- \"\$P/examples/astronaut.jpg\" --base-url $base_url \
    --output \"\$P/$OUT/headless.blend\" --json \"\$P/$OUT/headless.json\"" > "$OUT/headless.log" 2>&1 \
    || fail "image_to_3d.py (see $OUT/headless.log)"
  tail -1 "$OUT/headless.log"

  echo "-- blender -c onemin3d --help"
  run_in "$suite" "blender --command help" > "$OUT/cli.log" 2>&1
  if grep -qE '^[[:space:]]+onemin3d$' "$OUT/cli.log"; then
    run_in "$suite" "blender --command onemin3d --help" > "$OUT/cli.log" 2>&1 || fail "blender -c onemin3d --help"
    head -3 "$OUT/cli.log"
  else
    echo "   skipped: not registered (no 'onemin3d' in blender -c help)"
  fi

  if grep -l Traceback "$OUT"/*.log >/dev/null 2>&1; then
    for log in $(grep -l Traceback "$OUT"/*.log); do grep -n -B2 -A12 Traceback "$log" | head -60; done
    fail "a Python traceback in Blender's output"
  fi
  echo "== $suite: done in $((SECONDS - start)) s"
  ran+=("$suite")
done

if [ "${ONEMIN3D_UI_DOCS:-0}" = 1 ] && [ $status = 0 ] && [ ${#ran[@]} -gt 0 ]; then
  src=build/ui-test/${ran[-1]}/shots
  for pair in ready:ui-idle running:ui-running imported:ui-history cutout:ui-cutout; do
    cp "$src/${pair%%:*}.png" "docs/img/${pair#*:}.png"
  done
  echo "ui-test: docs/img/ui-idle.png, ui-running.png, ui-history.png and ui-cutout.png updated from ${ran[-1]}"
fi
exit $status
