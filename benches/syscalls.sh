#!/bin/bash
# syscalls.sh — system calls per extracted tar entry of a pull into containers-storage.
#
# Usage: benches/syscalls.sh [STOWAGE...]
#   STOWAGE     stowage binaries to measure, in turn (default: a release build of this tree)
# Environment:
#   CACHE       where the OS image of fixtures/make-os-image.sh is (default
#               /var/tmp/stowage-bench-cache; built there when missing)
#   IMAGE       the OCI layout to copy (default CACHE/os/gzip, tag `os`)
#   DIR         the tmpfs for the store (default /dev/shm)
#
# Not run in CI: needs root, strace, python3.
#
# 1. Count the tar entries of IMAGE's layers by kind (python3's tarfile).
# 2. Per binary: `strace -f -c` of `stowage -q copy oci:IMAGE:os containers-storage:[…]` into
#    a fresh store on DIR (every thread counted: the layer threads, the decoder threads, the
#    pipeline), then check that podman sees the image.
# 3. Print, per binary, each system call made at least once per 20 entries, as calls per
#    entry, and the total per entry (Markdown).
set -euo pipefail

CACHE=${CACHE:-/var/tmp/stowage-bench-cache}
DIR=${DIR:-/dev/shm}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BENCH=syscalls.sh
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"

require_root "containers-storage layers keep owners"
require_tools strace python3 podman
ensure_os_image
IMAGE=${IMAGE:-$CACHE/os/gzip}
if [ $# = 0 ]; then
    build_stowage
    set -- "$STOWAGE"
fi

work=$(mktemp -d "$DIR/st-sys.XXXXXX")
on_exit "for r in \"$work\"/*/root; do clean_store \"\$r\"; done; rm -rf \"$work\""

entries=$(python3 - "$IMAGE" <<'EOF'
import collections, json, sys, tarfile
layout = sys.argv[1]
blob = lambda d: f"{layout}/blobs/sha256/{d.split(':')[1]}"
index = json.load(open(f"{layout}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
kinds = collections.Counter()
for l in manifest["layers"]:
    with tarfile.open(blob(l["digest"]), "r:*") as t:
        for e in t:
            kinds["file" if e.isreg() else "dir" if e.isdir() else "symlink" if e.issym()
                  else "hardlink" if e.islnk() else "other"] += 1
print(sum(kinds.values()), " ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
EOF
)
log "IMAGE has $entries"

i=0
for bin in "$@"; do
    i=$((i + 1))
    root=$work/$i/root run_root=$work/$i/run
    strace -f -c -o "$work/$i.strace" "$bin" -q copy "oci:$IMAGE:os" \
        "containers-storage:[overlay@$root+$run_root]localhost/os:1" >/dev/null
    podman --root "$root" --runroot "$run_root" image exists localhost/os:1 \
        || die "podman does not see the image $bin wrote"
    python3 - "$work/$i.strace" "$bin" "$entries" <<'EOF'
import sys
path, binary, entries = sys.argv[1], sys.argv[2], sys.argv[3]
n = int(entries.split()[0])
calls = {}
for line in open(path):
    f = line.split()
    # % time, seconds, usecs/call, calls, [errors], syscall
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls[f[-1]] = int(f[3])
total = sum(calls.values())
print(f"\n### {binary}\n\n{n} entries ({entries.split(' ', 1)[1]}); {total} system calls, "
      f"**{total / n:.2f} per entry**\n")
print("| system call | calls | per entry |\n|---|---|---|")
for name, c in sorted(calls.items(), key=lambda kv: -kv[1]):
    if c * 20 >= n:
        print(f"| {name} | {c} | {c / n:.2f} |")
EOF
done
