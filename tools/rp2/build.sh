#!/usr/bin/env bash
# Build the real MicroPython firmware for a Raspberry Pi Pico (port rp2, board RPI_PICO) from source, and cache it.
#
#   tools/rp2/build.sh [stock|frozen|bootrom|sources|src] [--manifest PATH] [--key] [--cached]
#
#   stock    the stock v1.27.0 image (default)
#   frozen   the image with firmware/micropython/manifest.py frozen in (the soil core, the adapter, sdcard)
#   bootrom  the RP2040 B1 bootrom the emulator needs, taken from rp2040js's git source as data
#   sources  print where each source repository comes from (owner/name, URL, ref) and exit
#   src      print the MicroPython checkout the images are built from (its lib/micropython-lib holds the sdcard
#            driver an offline `make flash` copies); exit 3 when no build has checked it out yet
#   --key    print the target's cache key and exit (no sources needed)
#   --cached print the cached file's path if it is there, exit 3 if not; never build
#
# Prints the path of the image (or bootrom) on stdout; progress goes to stderr. See tools/rp2/README.md.
#
# Environment:
#   SOIL_RP2_CACHE    where sources, build folders and images live (default ~/.cache/soil-rp2); never the repo
#   SOIL_RP2_MIRRORS  take the sources from local git mirrors laid out as $SOIL_RP2_MIRRORS/<owner>+<name>/repo
#                     instead of GitHub
#   SOIL_RP2_JOBS     parallel compile jobs (default: the number of cores)
set -euo pipefail

PROG=rp2-build
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

# What is built, pinned. The submodule commits are the ones MicroPython v1.27.0 records; they are read from its
# tree at checkout (so they cannot drift from the tag), the list only says which four the rp2 port needs.
MP_VERSION=v1.27.0
MP_BOARD=RPI_PICO
MP_SUBMODULES="lib/pico-sdk:raspberrypi/pico-sdk lib/tinyusb:hathach/tinyusb
lib/micropython-lib:micropython/micropython-lib lib/mbedtls:Mbed-TLS/mbedtls"
PICOTOOL_VERSION=2.1.1          # pico-sdk 2.1.1 (v1.27.0's) wants exactly this one to write the UF2
RP2040JS_REF=v1.3.3             # the git tag whose demo/bootrom.ts we read (the B1 bootrom; npm 1.4.1 ships none)
# Files the build never reads that some mirrors lack (one large blob each): never checked out.
SPARSE_SKIP="lib/pico-sdk:/src/rp2350/hardware_regs/RP2350.svd
lib/mbedtls:/tests/suites/test_suite_psa_crypto_op_fail.generated.data"

CACHE=${SOIL_RP2_CACHE:-$HOME/.cache/soil-rp2}
JOBS=${SOIL_RP2_JOBS:-$(nproc 2>/dev/null || echo 2)}
MANIFEST=$REPO/firmware/micropython/manifest.py

die() { echo "$PROG: $*" >&2; exit 1; }
say() { echo "$PROG: $*" >&2; }

# --- arguments -------------------------------------------------------------------------------------------------
TARGET=stock; ONLY_KEY=0; ONLY_CACHED=0
while [ $# -gt 0 ]; do
  case $1 in
    stock|frozen|bootrom|sources|src) TARGET=$1 ;;
    --frozen) TARGET=frozen ;;
    --manifest) [ $# -ge 2 ] || die "--manifest needs a path"; MANIFEST=$2; shift ;;
    --key) ONLY_KEY=1 ;;
    --cached) ONLY_CACHED=1 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (stock, frozen, bootrom, sources, src, --manifest PATH, --key, --cached)" ;;
  esac
  shift
done
case $CACHE in "$REPO"|"$REPO"/*) die "SOIL_RP2_CACHE=$CACHE is inside the repository: images are never kept there" ;; esac

# --- where sources come from -----------------------------------------------------------------------------------
# source_url owner/name: the GitHub URL, or the local mirror when SOIL_RP2_MIRRORS is set (need_sources has
# checked that it holds it: a `die` inside $(...) would only end the subshell).
source_url() {
  if [ -n "${SOIL_RP2_MIRRORS:-}" ]; then
    echo "$SOIL_RP2_MIRRORS/${1/\//+}/repo"
  else
    echo "https://github.com/$1.git"
  fi
}

need_sources() {   # need_sources owner/name...: each has a mirror, when mirrors are used
  [ -n "${SOIL_RP2_MIRRORS:-}" ] || return 0
  local repo
  for repo in "$@"; do
    [ -d "$(source_url "$repo")" ] || die "SOIL_RP2_MIRRORS=$SOIL_RP2_MIRRORS has no mirror of $repo (expected $(source_url "$repo"))"
  done
}
ALL_SOURCES="micropython/micropython $(for e in $MP_SUBMODULES; do echo "${e#*:}"; done) raspberrypi/picotool"

sparse_skip_for() {   # sparse_skip_for lib/pico-sdk -> the path to leave out, or nothing
  local line
  while IFS= read -r line; do [ "${line%%:*}" = "$1" ] && echo "${line#*:}"; done <<<"$SPARSE_SKIP"
  return 0
}

# have DIR REF: DIR is a checkout of REF already (then no source is fetched for it: a build works offline).
have() {
  [ -d "$1/.git" ] && [ "$(git -C "$1" rev-parse -q --verify "HEAD^{commit}" 2>/dev/null)" = \
    "$(git -C "$1" rev-parse -q --verify "$2^{commit}" 2>/dev/null || echo none)" ]
}

# checkout URL DIR REF [SKIP]: DIR holds REF (a tag or a commit) of URL, without the file SKIP.
# A local mirror is cloned (git links its objects; a fetch would have to pack every blob, and a missing one stops
# it); a remote is fetched at depth 1, the one commit the build needs.
checkout() {
  local url=$1 dir=$2 ref=$3 skip=${4:-}
  if have "$dir" "$ref"; then
    return 0
  fi
  rm -rf "$dir"
  if [ -d "$url" ]; then
    git clone -q --no-checkout "$url" "$dir"
  else
    git init -q "$dir"
    case $ref in
      v*|[0-9]*.*) git -C "$dir" fetch -q --depth 1 "$url" "refs/tags/$ref:refs/tags/$ref" ;;
      *) git -C "$dir" fetch -q --depth 1 "$url" "$ref" ;;
    esac
  fi
  if [ -n "$skip" ]; then
    git -C "$dir" sparse-checkout set --no-cone '/*' "!$skip"
  fi
  # git still names the skipped blob while it builds the index ("invalid object ... for '<skip>'"): not an error.
  git -C "$dir" -c advice.detachedHead=false checkout -q "$ref" 2> >(grep -v "^error: invalid object .* for '${skip#/}'" >&2)
}

cached_note() {   # cached_note DIR REF: " (cached: DIR)" when the cache holds it
  if have "$1" "$2"; then echo " (cached: $1)"; fi
}

print_sources() {
  need_sources $ALL_SOURCES wokwi/rp2040js
  local mp="$CACHE/src/micropython-$MP_VERSION" entry path commit
  echo "micropython/micropython $(source_url micropython/micropython) $MP_VERSION$(cached_note "$mp" "$MP_VERSION")"
  for entry in $MP_SUBMODULES; do
    path=${entry%%:*}
    commit=$( (git -C "$mp" ls-tree "$MP_VERSION" "$path" 2>/dev/null || true) | awk '{print $3}')
    echo "${entry#*:} $(source_url "${entry#*:}") (the commit $MP_VERSION records at $path)$( \
      [ -n "$commit" ] && cached_note "$mp/$path" "$commit")"
  done
  echo "raspberrypi/picotool $(source_url raspberrypi/picotool) $PICOTOOL_VERSION$( \
    [ -f "$CACHE/picotool-$PICOTOOL_VERSION/picotool/picotoolConfig.cmake" ] && echo " (built: $CACHE/picotool-$PICOTOOL_VERSION)")"
  echo "wokwi/rp2040js $(source_url wokwi/rp2040js) $RP2040JS_REF (demo/bootrom.ts only)$(cached_note "$CACHE/src/rp2040js" "$RP2040JS_REF")"
}

# --- cache keys and paths --------------------------------------------------------------------------------------
frozen_key() {
  local files_hash
  files_hash=$(python3 "$HERE/manifest_key.py" "$MANIFEST") || exit 1
  printf '%s %s %s\n' "$MP_VERSION" "$MP_BOARD" "$files_hash" | sha256sum | cut -c1-16
}

case $TARGET in
  sources) print_sources; exit 0 ;;
  src)     src="$CACHE/src/micropython-$MP_VERSION"
           [ -f "$src/lib/micropython-lib/README.md" ] || { say "no MicroPython checkout in $CACHE yet (make rp2-image)"; exit 3; }
           echo "$src"; exit 0 ;;
  stock)   KEY="$MP_VERSION-$MP_BOARD"; OUT="$CACHE/images/$KEY/firmware.uf2" ;;
  frozen)  KEY="$MP_VERSION-$MP_BOARD-frozen-$(frozen_key)"; OUT="$CACHE/images/$KEY/firmware.uf2" ;;
  bootrom) KEY="rp2040js-$RP2040JS_REF-bootrom-b1"; OUT="$CACHE/bootrom/$KEY.bin" ;;
esac
if [ "$ONLY_KEY" = 1 ]; then echo "$KEY"; exit 0; fi
if [ -f "$OUT" ]; then echo "$OUT"; exit 0; fi
if [ "$ONLY_CACHED" = 1 ]; then say "not cached: $OUT"; exit 3; fi

mkdir -p "$CACHE"
# One build at a time per cache (the sources and build folders are shared); the bootrom has its own lock.
exec 9>"$CACHE/.lock-$([ "$TARGET" = bootrom ] && echo bootrom || echo build)"
if ! flock -n 9; then say "waiting for another build in $CACHE"; flock 9; fi
if [ -f "$OUT" ]; then echo "$OUT"; exit 0; fi          # built by whoever held the lock

# --- the bootrom -----------------------------------------------------------------------------------------------
if [ "$TARGET" = bootrom ]; then
  need_sources wokwi/rp2040js
  src="$CACHE/src/rp2040js"
  checkout "$(source_url wokwi/rp2040js)" "$src" "$RP2040JS_REF" >&2
  mkdir -p "$(dirname "$OUT")"
  # demo/bootrom.ts is `new Uint32Array([0x..., ...])`: the words, little-endian, are the 16 KB ROM.
  python3 - "$src/demo/bootrom.ts" "$OUT.tmp" <<'PY'
import re, struct, sys
words = [int(w, 16) for w in re.findall(r"0x[0-9a-fA-F]{1,8}", open(sys.argv[1]).read().split("[", 1)[1])]
if len(words) != 4096:
    sys.exit("rp2-build: %s: %d words, expected 4096 (16 KB)" % (sys.argv[1], len(words)))
open(sys.argv[2], "wb").write(struct.pack("<4096I", *words))
PY
  mv "$OUT.tmp" "$OUT"
  say "bootrom: $OUT"
  echo "$OUT"; exit 0
fi

# --- the toolchain ---------------------------------------------------------------------------------------------
APT_PKGS="gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib cmake build-essential"
if ! command -v arm-none-eabi-gcc >/dev/null || ! command -v cmake >/dev/null || ! command -v g++ >/dev/null \
   || [ ! -f /usr/lib/arm-none-eabi/include/stdio.h ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing the ARM toolchain (apt): $APT_PKGS"
    apt-get -o DPkg::Lock::Timeout=900 install -y -q $APT_PKGS >&2 \
      || { apt-get -o DPkg::Lock::Timeout=900 update -q >&2 && \
           apt-get -o DPkg::Lock::Timeout=900 install -y -q $APT_PKGS >&2; } \
      || die "apt-get install failed"
  else
    die "the ARM toolchain is missing; install it with: sudo apt-get install $APT_PKGS"
  fi
fi

# --- sources ---------------------------------------------------------------------------------------------------
need_sources $ALL_SOURCES
MP="$CACHE/src/micropython-$MP_VERSION"
T0=$(date +%s)
say "sources: micropython $MP_VERSION${SOIL_RP2_MIRRORS:+ (mirrors in $SOIL_RP2_MIRRORS)}"
checkout "$(source_url micropython/micropython)" "$MP" "$MP_VERSION" >&2
for entry in $MP_SUBMODULES; do
  path=${entry%%:*}; repo=${entry#*:}
  commit=$(git -C "$MP" ls-tree "$MP_VERSION" "$path" | awk '{print $3}')
  [ -n "$commit" ] || die "micropython $MP_VERSION records no submodule at $path"
  checkout "$(source_url "$repo")" "$MP/$path" "$commit" "$(sparse_skip_for "$path")" >&2
done
[ -f "$MP/lib/pico-sdk/src/rp2040/hardware_regs/include/hardware/regs/addressmap.h" ] || die "pico-sdk checkout incomplete"

PICOTOOL="$CACHE/picotool-$PICOTOOL_VERSION"
if [ ! -f "$PICOTOOL/picotool/picotoolConfig.cmake" ]; then
  say "picotool $PICOTOOL_VERSION (once)"
  checkout "$(source_url raspberrypi/picotool)" "$CACHE/src/picotool" "$PICOTOOL_VERSION" >&2
  rm -rf "$CACHE/build/picotool"
  # Without libusb: only the ELF-to-UF2 part is needed, as the SDK's own fallback builds it.
  cmake -S "$CACHE/src/picotool" -B "$CACHE/build/picotool" -DPICO_SDK_PATH="$MP/lib/pico-sdk" \
        -DPICOTOOL_NO_LIBUSB=1 -DPICOTOOL_FLAT_INSTALL=1 -DCMAKE_INSTALL_PREFIX="$PICOTOOL" >"$CACHE/picotool.log" 2>&1 \
    && cmake --build "$CACHE/build/picotool" -j"$JOBS" >>"$CACHE/picotool.log" 2>&1 \
    && cmake --install "$CACHE/build/picotool" >>"$CACHE/picotool.log" 2>&1 \
    || { tail -20 "$CACHE/picotool.log" >&2; die "picotool build failed (log: $CACHE/picotool.log)"; }
fi
export PICOTOOL_FETCH_FROM_GIT_PATH="$PICOTOOL"   # the SDK looks for $PICOTOOL/picotool/picotoolConfig.cmake

if [ ! -x "$MP/mpy-cross/build/mpy-cross" ]; then
  say "mpy-cross (once)"
  make -C "$MP/mpy-cross" -j"$JOBS" >"$CACHE/mpy-cross.log" 2>&1 \
    || { tail -20 "$CACHE/mpy-cross.log" >&2; die "mpy-cross build failed (log: $CACHE/mpy-cross.log)"; }
fi

# --- the firmware ----------------------------------------------------------------------------------------------
# One build folder per target: the frozen one is reused, because MicroPython re-freezes the manifest at every
# build (a changed module recompiles only the frozen content); cmake is run each time so the manifest path given
# now is the one used.
BUILD="$CACHE/build/$MP_BOARD-$TARGET"
CMAKE_ARGS=(-DMICROPY_BOARD=$MP_BOARD -DMICROPY_BOARD_DIR="$MP/ports/rp2/boards/$MP_BOARD" -DPICO_BUILD_DOCS=0)
if [ "$TARGET" = frozen ]; then
  CMAKE_ARGS+=(-DMICROPY_FROZEN_MANIFEST="$(cd "$(dirname "$MANIFEST")" && pwd)/$(basename "$MANIFEST")")
fi
LOG="$CACHE/build-$TARGET.log"
say "firmware $MP_VERSION $MP_BOARD $TARGET: building in $BUILD (log $LOG, $JOBS jobs)"
S=$(date +%s)
{ cmake -S "$MP/ports/rp2" -B "$BUILD" "${CMAKE_ARGS[@]}" && cmake --build "$BUILD" -j"$JOBS"; } >"$LOG" 2>&1 \
  || { tail -30 "$LOG" >&2; die "firmware build failed (log: $LOG)"; }
[ -f "$BUILD/firmware.uf2" ] || die "the build made no firmware.uf2 (log: $LOG)"
mkdir -p "$(dirname "$OUT")"
cp "$BUILD/firmware.uf2" "$OUT.tmp"
cp "$BUILD/firmware.elf" "$(dirname "$OUT")/firmware.elf"
{ echo "micropython $MP_VERSION board $MP_BOARD target $TARGET key $KEY"
  [ "$TARGET" = frozen ] && python3 "$HERE/manifest_key.py" "$MANIFEST" --files
  echo "built $(date -u +%FT%TZ) in $(( $(date +%s) - S )) s"; } > "$(dirname "$OUT")/info.txt"
mv "$OUT.tmp" "$OUT"
say "image: $OUT ($(( $(date +%s) - S )) s firmware, $(( $(date +%s) - T0 )) s in all)"
echo "$OUT"
