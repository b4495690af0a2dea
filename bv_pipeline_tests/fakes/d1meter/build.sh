#!/usr/bin/env bash
# Build libsqlite3_d1.so: SQLite with Cloudflare's row counters, so the local D1 endpoint reports rows_read /
# rows_written exactly as D1 bills them. The counters come from Cloudflare workerd's
# patches/sqlite/0001-row-counts-plain.patch (itself derived from libSQL), applied by patch_rowcounts.py to the
# SQLite amalgamation that the better-sqlite3 npm package ships.
# Usage: build.sh OUT_DIR   (needs npm, python3, gcc; about 30 s). Idempotent: the download is reused.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "${1:?usage: build.sh OUT_DIR}"
out="$(cd "$1" && pwd)"
pkg="${D1METER_NPM_PACKAGE:-better-sqlite3@12.11.1}"  # ships SQLite 3.53.2, the version the patch anchors were checked on
mkdir -p "$out/src"
cd "$out/src"
if [ ! -f package/deps/sqlite3/sqlite3.c ]; then
  rm -rf package ./*.tgz
  npm pack --silent "$pkg" >/dev/null
  tar xzf ./*.tgz
fi
python3 "$here/patch_rowcounts.py" package/deps/sqlite3/sqlite3.c sqlite3_d1.c
# The SQLITE_* options are workerd's (build/BUILD.sqlite3), so SQL that D1 accepts (e.g. DELETE ... LIMIT) and
# its query plans match. -Bsymbolic: the library's own calls bind to its own (patched) symbols even if another
# SQLite is loaded in the process.
gcc -O2 -fPIC -shared -Wl,-Bsymbolic -DSQLITE_THREADSAFE=1 \
  -DSQLITE_MAX_ALLOCATION_SIZE=16777216 -DSQLITE_PRINTF_PRECISION_LIMIT=100000 -DSQLITE_ENABLE_FTS5 \
  -DSQLITE_ENABLE_NORMALIZE -DSQLITE_ENABLE_MATH_FUNCTIONS -DSQLITE_DEFAULT_FOREIGN_KEYS=1 -DSQLITE_ENABLE_RTREE \
  -DSQLITE_ENABLE_UPDATE_DELETE_LIMIT -DSQLITE_OMIT_SHARED_CACHE \
  -o "$out/libsqlite3_d1.so.tmp" sqlite3_d1.c -lpthread -lm -ldl
mv "$out/libsqlite3_d1.so.tmp" "$out/libsqlite3_d1.so"
echo "built $out/libsqlite3_d1.so"
