#!/usr/bin/env bash
# test_install.sh -- `meson install` of libplcache, and a program built
# against the installed copy with pkg-config (TAP).
#
#   test_install.sh BUILD_DIR SANITIZE
#
# Installs the build into a temporary DESTDIR, checks the shared library (its
# soname, its exports: plcache_* only), the static library, the header and
# plcache.pc, then compiles a tiny client with `pkg-config --cflags --libs
# plcache` (PKG_CONFIG_SYSROOT_DIR pointing into the DESTDIR), linked with
# the shared and with the static library, and runs it. SANITIZE is b_sanitize: the
# client is built with the same -fsanitize flags as the library.
set -uo pipefail
build=$1
sanitize=${2:-none}
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
  n=$((n + 1)); failed=1; echo "not ok $n - $1"
  if [ -n "${2:-}" ]; then while IFS= read -r line; do echo "# $line"; done <<<"$2"; fi
}
check() { local what=$1; shift; local out; if out=$("$@" 2>&1); then ok "$what"; else not_ok "$what" "$out"; fi; }

dest=$(mktemp -d /tmp/test_install.XXXXXX)
trap 'rm -rf "$dest"' EXIT
echo "1..10"

check "meson install into a DESTDIR" meson install -C "$build" --destdir "$dest" --no-rebuild --quiet

so=$(find "$dest" -name 'libplcache.so.0.1.0' -print -quit)
libdir=$(dirname "${so:-/nonexistent/x}")
pcdir="$libdir/pkgconfig"
check "shared library libplcache.so.0.1.0 installed" test -f "$so"
check "soname is libplcache.so.0, with the .so.0 and .so links" \
  bash -c "readelf -d '$so' | grep -q 'Library soname: \[libplcache.so.0\]' &&
           test \"\$(readlink '$libdir/libplcache.so.0')\" = libplcache.so.0.1.0 &&
           test -L '$libdir/libplcache.so'"
check "the shared library exports plcache_* only" \
  bash -c "nm -D --defined-only '$so' | awk '{print \$3}' | grep -v '^plcache_' | grep -v '^PLCACHE_0' | grep -q . && exit 1 || exit 0"
check "static library libplcache.a installed" test -f "$libdir/libplcache.a"
inc=$(find "$dest" -path '*/include/plcache.h' -print -quit)
check "header plcache.h installed" test -n "$inc"
check "plcache.pc installed, version 0.1.0" \
  env PKG_CONFIG_PATH="$pcdir" PKG_CONFIG_SYSROOT_DIR="$dest" pkg-config --exact-version=0.1.0 plcache

cat >"$dest/client.c" <<'C'
#include <plcache.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    plcache_options o;
    plcache_options_init(&o);
    o.redis_url = "redis://127.0.0.1:1/0"; /* nobody listens on port 1 */
    o.redis_timeout_ms = 200;
    plcache *c = NULL;
    char err[256];
    plcache_status st = plcache_open(&c, &o, err, sizeof(err));
    if (st != PLCACHE_E_REDIS || c != NULL || strstr(err, "127.0.0.1:1") == NULL) {
        fprintf(stderr, "unexpected: %s (%s)\n", plcache_status_str(st), err);
        return 1;
    }
    printf("%d.%d.%d %s\n", PLCACHE_VERSION_MAJOR, PLCACHE_VERSION_MINOR, PLCACHE_VERSION_PATCH,
           plcache_status_str(PLCACHE_OK));
    return 0;
}
C
san=()
if [ "$sanitize" != none ] && [ -n "$sanitize" ]; then
  san=("-fsanitize=$sanitize")
fi
pc() { PKG_CONFIG_PATH="$pcdir" PKG_CONFIG_SYSROOT_DIR="$dest" pkg-config "$@" plcache; }
# shellcheck disable=SC2046
check "a client compiles and links with pkg-config --cflags --libs plcache" \
  cc -std=c17 -Wall -Wextra -Werror "${san[@]}" -o "$dest/client" "$dest/client.c" $(pc --cflags --libs)
check "the dynamically linked client runs against the installed library" \
  bash -c "out=\$(LD_LIBRARY_PATH='$libdir' '$dest/client') && test \"\$out\" = '0.1.0 ok' &&
           LD_LIBRARY_PATH='$libdir' ldd '$dest/client' | grep -q '$libdir/libplcache.so.0'"
# shellcheck disable=SC2046
# The libraries of Requires.private are linked dynamically: Debian ships no
# static build of all of libcurl's own dependencies.
check "a client links libplcache.a statically (with Requires.private) and runs" \
  bash -c "req=\$(PKG_CONFIG_PATH='$pcdir' pkg-config --print-requires-private plcache | awk '{print \$1}') &&
           cc -std=c17 ${san[*]} -o '$dest/client-static' '$dest/client.c' $(pc --cflags) \
             '$libdir/libplcache.a' $(pc --static --libs-only-other) \$(pkg-config --libs \$req) &&
           ! ldd '$dest/client-static' | grep -q libplcache &&
           test \"\$('$dest/client-static')\" = '0.1.0 ok'"
exit $failed
