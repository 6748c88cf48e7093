#!/bin/bash
# compare-unified.sh — how much space and time `image copy-to-storage` (ostree →
# containers-storage) and `copy containers-storage:… ostree:…` take when the two stores share
# a filesystem with reflinks, against the same filesystem without them (issue 8).
#
# Usage: benches/compare-unified.sh [RUNS]
#   RUNS   runs per case (default 3; env RUNS works too)
# Environment: CACHE (the OS image of fixtures/make-os-image.sh, CACHE/os), OUT, STOWAGE
# (default: a release build), NICE, as for compare-cstorage.sh.
#
# Not run in CI: needs root (loop mounts), mkfs.xfs, filefrag, ostree.
#
# 1. Per case (`xfs reflink=1`, `xfs reflink=0`): a 3 GiB XFS image, loop-mounted; a bare
#    repository on it (bootc's sysroot repository is bare) into which the OS image is
#    imported once, untimed.
# 2. ostree → containers-storage: per run, into a fresh store on the same filesystem, timed;
#    the used blocks of the filesystem (`df` after `sync -f`) before and after give the space
#    the copy took. `du` would count a reflinked file fully in both stores, so it is not used.
# 3. containers-storage → ostree: that store into a fresh bare-user repository on the same
#    filesystem, timed, with the space it took.
# 4. The table: median wall time and space per case and direction, and the summary line's
#    file counts.
set -euo pipefail

RUNS=${1:-${RUNS:-3}}
NICE=${NICE:--15}
CACHE=${CACHE:-/var/tmp/stowage-bench-cache}
BENCH=compare-unified
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/stowage-unified.XXXXXX)}
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"

require_root "loop mounts"
require_tools mkfs.xfs ostree filefrag
ensure_gnu_time
build_stowage
ensure_os_image
raise_autogroup
mkdir -p "$OUT"

used() { sync -f "$1"; df --output=used -B1 "$1" | tail -1 | tr -d ' '; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '| case | direction | median wall s | space used (MB) | files |\n|---|---|---|---|---|\n' >"$OUT/table.md"
for reflink in 1 0; do
    img=$OUT/fs-$reflink.img
    mnt=$OUT/mnt-$reflink
    mkdir -p "$mnt"
    truncate -s 3G "$img"
    mkfs.xfs -q -m reflink=$reflink "$img"
    mount -o loop "$img" "$mnt"
    on_exit "umount -l '$mnt'; rm -f '$img'"
    ostree init --repo="$mnt/repo" --mode=bare
    log "xfs reflink=$reflink: importing the OS image"
    "$STOWAGE" --insecure-policy -q copy "oci:$CACHE/os/gzip:os" "ostree:[$mnt/repo]localhost/os:1"
    : >"$OUT/to-cs.tsv"
    : >"$OUT/to-ostree.tsv"
    for run in $(seq "$RUNS"); do
        host=$mnt/host-$run
        on_exit "clean_store '$host/root'"
        before=$(used "$mnt")
        timed "$OUT/t" "$STOWAGE" --insecure-policy image --host-storage "$host/root" \
            --host-runroot "$host/run" --bootc-storage "$OUT/bootc/root" \
            --bootc-runroot "$OUT/bootc/run" copy-to-storage \
            --source "ostree:[$mnt/repo]localhost/os:1" --target localhost/os:1
        after=$(used "$mnt")
        files=$(grep -o 'files: [^;]*' "$OUT/last.log" | head -1)
        printf '%s\t%s\t%s\n' "$(tail -1 "$OUT/t" | cut -f1)" "$((after - before))" "$files" >>"$OUT/to-cs.tsv"

        ostree init --repo="$mnt/back-$run" --mode=bare-user
        before=$(used "$mnt")
        timed "$OUT/t" "$STOWAGE" --insecure-policy copy \
            "containers-storage:[overlay@$host/root+$host/run]localhost/os:1" \
            "ostree:[$mnt/back-$run]localhost/os:1"
        after=$(used "$mnt")
        files=$(grep -o 'files: [^;]*' "$OUT/last.log" | head -1)
        printf '%s\t%s\t%s\n' "$(tail -1 "$OUT/t" | cut -f1)" "$((after - before))" "$files" >>"$OUT/to-ostree.tsv"
    done
    for dir in to-cs to-ostree; do
        wall=$(cut -f1 "$OUT/$dir.tsv" | median)
        space=$(cut -f2 "$OUT/$dir.tsv" | median)
        files=$(cut -f3 "$OUT/$dir.tsv" | head -1)
        printf '| xfs reflink=%s | %s | %s | %.1f | %s |\n' "$reflink" \
            "$([ $dir = to-cs ] && echo 'ostree → containers-storage' || echo 'containers-storage → ostree')" \
            "$wall" "$(awk -v s="$space" 'BEGIN {print s / 1e6}')" "$files" >>"$OUT/table.md"
    done
done
cat "$OUT/table.md"
