#!/bin/bash
# compare-cstorage.sh — stowage vs skopeo/podman on containers-storage, on tmpfs and on disk.
#
# Usage: benches/compare-cstorage.sh [RUNS]
#   RUNS        alternating runs per tool and case (default 5; env RUNS works too)
# Environment:
#   CACHE       where the OS-sized image is built once and reused (default
#               /var/tmp/stowage-bench-cache; the image is CACHE/os/{gzip,zstd}, tag `os`)
#   OUT         where raw results go (default CACHE/results-DATE)
#   FILESYSTEMS space-separated NAME=DIR pairs to run on (default "tmpfs=/dev/shm disk=/var/tmp");
#               DIR `fresh-ext4`: a new loop-mounted ext4 for this run (benches/lib.sh fs_dir)
#   STOWAGE     a stowage binary to use instead of building one
#   TOOLS       the copiers to compare (default "stowage skopeo floor"; `floor` is the shell
#               floor of benches/lib.sh's shell_floor: sha256sum | pigz -d | tar -x per layer,
#               two layers at a time, into plain directories; skipped without pigz)
#   LIST_RUNS   hyperfine runs for the image-list comparison (default 30)
#   LIST_IMAGES images in the store for the image-list comparison (default 20, at least 9)
#   SETTLE      seconds to wait before the runs on a non-tmpfs filesystem (default 65; see 3.)
#   NICE        niceness of the timed commands and of this script's scheduler autogroup
#               (default -15: on a shared machine other work yields to both tools alike; with
#               sched_autogroup_enabled, plain `nice` only ranks processes of one session, so the
#               session's autogroup gets it too and is restored on exit; 0 turns it off)
#
# Not run in CI: needs root (overlay stores, file owners), skopeo, podman, umoci, hyperfine and,
# for the first run, network access to deb.debian.org (fixtures/make-os-image.sh).
#
# 1. Build `stowage` in release mode (unless STOWAGE is set).
# 2. Build the OS image with fixtures/make-os-image.sh into CACHE/os, unless it is there.
# 3. For each filesystem, each compression (gzip, zstd) and each run, copy
#    oci:CACHE/os/C:os into a fresh containers-storage root on that filesystem, once with
#    `stowage copy`, once with `skopeo copy` and once with the shell floor, rotating which goes
#    first. Each run is timed
#    with /usr/bin/time (wall, user, sys, peak RSS); skopeo gets `--tmpdir` on the same filesystem
#    (it stages every blob there before extracting it, by default in /var/tmp); before each run `sync` flushes the previous
#    run's writeback so it does not land in this run's time. The first stowage result per case
#    is checked with `podman image exists`. Roots are kept until the filesystem's runs are
#    over, then unmounted (`umount -l ROOT/overlay`: containers-storage mounts it on itself)
#    and removed. Why not remove them between runs: on an ext4 without a journal (this
#    machine's root) the inode allocator skips every inode freed in the last 60 s (300 s while
#    its inode-table block is dirty) one by one (`recently_deleted()` in fs/ext4/ialloc.c), so
#    creating 8,000 files just after deleting 8,000 costs seconds of system time and the
#    numbers measure the previous run's `rm -rf`. For the same reason the disk runs start after
#    `sync` and SETTLE seconds (default 65) without deleting anything.
# 4. Fill a store with LIST_IMAGES images (9 of the committed fixtures plus relabelled copies
#    of `basic`, made with umoci) and time `stowage image cmd list` against `podman images` with
#    hyperfine (skipped with a message while the stowage command does not exist).
# 5. Print medians, minima and ratios as Markdown tables (with the 1-minute load average seen
#    before the runs: the machine may be shared); raw numbers are kept in OUT.
set -euo pipefail

RUNS=${1:-${RUNS:-5}}
LIST_RUNS=${LIST_RUNS:-30}
LIST_IMAGES=${LIST_IMAGES:-20}
TOOLS=${TOOLS:-"stowage skopeo floor"}
NICE=${NICE:--15}
CACHE=${CACHE:-/var/tmp/stowage-bench-cache}
FILESYSTEMS=${FILESYSTEMS:-"tmpfs=/dev/shm disk=/var/tmp"}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$CACHE/results-$(date +%Y%m%d-%H%M%S)}
NAME=localhost/os:1
BENCH=compare-cstorage.sh
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"

require_root "containers-storage overlay stores keep owners and device nodes"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number, got '$RUNS'"
[[ $LIST_IMAGES =~ ^[0-9]+$ ]] && [ "$LIST_IMAGES" -ge 9 ] || die "LIST_IMAGES must be at least 9"
require_tools skopeo podman umoci hyperfine
case " $TOOLS " in
    *" floor "*)
        if ! command -v pigz >/dev/null || ! command -v zstd >/dev/null; then
            log "skipping the shell floor: it needs pigz and zstd (apt-get install pigz zstd)"
            TOOLS=$(echo " $TOOLS " | sed 's/ floor / /')
        fi
        ;;
esac
ensure_gnu_time
mkdir -p "$CACHE" "$OUT"
raise_autogroup

# 1. stowage
build_stowage

# 2. the OS-sized image
ensure_os_image

RAW=$OUT/copy.tsv
printf 'fs\tcompression\trun\ttool\twall_s\tuser_s\tsys_s\tmaxrss_kb\tload1\n' >"$RAW"

# run_copy FS C RUN TOOL BASE: one timed copy into a fresh store under BASE.
run_copy() {
    local fs=$1 c=$2 run=$3 tool=$4 base=$5
    local root=$base/$c-$run-$tool-root run_root=$base/$c-$run-$tool-run
    local dst="containers-storage:[overlay@$root+$run_root]$NAME"
    local src="oci:$CACHE/os/$c:os"
    local t=$OUT/time.$$
    local cmd
    case $tool in
        stowage) cmd=("$STOWAGE" -q copy "$src" "$dst") ;;
        # containers/image stages each blob in a temporary directory (default /var/tmp) before
        # applying it; keep that on the filesystem under test.
        skopeo) cmd=(skopeo --tmpdir "$base" copy -q "$src" "$dst") ;;
        floor) cmd=(bash -c '. "$1"; shell_floor "$2" os "$3"' floor "$REPO/benches/lib.sh"
            "$CACHE/os/$c" "$root") ;;
    esac
    sync
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    log "$fs $c run $run/$RUNS: $tool"
    timed "$t" "${cmd[@]}"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$fs" "$c" "$run" "$tool" "$(tail -1 "$t")" "$load" >>"$RAW"
    if [ "$tool" = stowage ] && [ "$run" = 1 ]; then
        podman --root "$root" --runroot "$run_root" image exists "$NAME" \
            || die "podman does not see $NAME in the store stowage wrote ($root)"
    fi
    rm -f "$t"
}

# 3. copies
for pair in $FILESYSTEMS; do
    fs=${pair%%=*}
    fs_dir "$fs" "${pair#*=}"
    dir=$FS_DIR
    [ -d "$dir" ] || { log "skipping $fs: $dir does not exist"; continue; }
    base=$(mktemp -d "$dir/stowage-compare.XXXXXX")
    settle "$fs"
    for c in gzip zstd; do
        for run in $(seq 1 "$RUNS"); do
            for tool in $(order "$run"); do
                run_copy "$fs" "$c" "$run" "$tool" "$base"
            done
        done
    done
    for root in "$base"/*-root; do clean_store "$root"; done
    rm -rf "$base"
done

# 4. image list with LIST_IMAGES images
LIST_RAW=$OUT/list.tsv
printf 'fs\ttool\tmedian_s\tmin_s\tmean_s\tmaxrss_kb\n' >"$LIST_RAW"
if "$STOWAGE" image cmd list --help >/dev/null 2>&1; then
    images=$OUT/images
    rm -rf "$images"
    cp -a "$REPO/fixtures/oci" "$images"
    extra=$((LIST_IMAGES - 9))
    for i in $(seq 1 "$extra"); do
        umoci config --image "$images:basic" --tag "basic-$i" --config.label "org.stowage.bench=$i" >/dev/null
    done
    # docker-schema2 is left out: skopeo 1.9's oci: transport does not find Docker manifests.
    tags=(basic whiteouts links names devices basic-zstd basic-uncompressed zstd-multiframe multiarch)
    for i in $(seq 1 "$extra"); do tags+=("basic-$i"); done
    for pair in $FILESYSTEMS; do
        fs=${pair%%=*}
        fs_dir "$fs" "${pair#*=}"
        dir=$FS_DIR
        [ -d "$dir" ] || continue
        base=$(mktemp -d "$dir/stowage-list.XXXXXX")
        root=$base/root run_root=$base/run
        log "$fs: filling a store with ${#tags[@]} images"
        for t in "${tags[@]}"; do
            skopeo copy -q "oci:$images:$t" "containers-storage:[overlay@$root+$run_root]localhost/bench/$t:1" >/dev/null
        done
        n=$(podman --root "$root" --runroot "$run_root" images -q --no-trunc | sort -u | wc -l)
        [ "$n" = "${#tags[@]}" ] || die "expected ${#tags[@]} images in $root, podman lists $n"
        s_cmd="$STOWAGE image cmd list --bootc-storage $root --bootc-runroot $run_root"
        p_cmd="podman --root $root --runroot $run_root images"
        ns=$($s_cmd | tail -n +2 | wc -l)
        np=$($p_cmd | tail -n +2 | wc -l)
        [ "$ns" = "$np" ] || die "stowage lists $ns images, podman $np (store $root)"
        nice -n "$NICE" hyperfine -N --warmup 3 --runs "$LIST_RUNS" --export-json "$OUT/list-$fs.json" \
            -n stowage "$s_cmd" -n podman "$p_cmd" >"$OUT/list-$fs.txt" 2>&1 \
            || { cat "$OUT/list-$fs.txt" >&2; die "hyperfine failed"; }
        for tool in stowage podman; do
            list_cmd=$s_cmd; [ $tool = podman ] && list_cmd=$p_cmd
            # shellcheck disable=SC2086
            rss=$(/usr/bin/time -f '%M' $list_cmd 2>&1 >/dev/null | tail -1)
            python3 - "$OUT/list-$fs.json" "$tool" "$fs" "$rss" >>"$LIST_RAW" <<'EOF'
import json, sys
path, tool, fs, rss = sys.argv[1:]
r = next(r for r in json.load(open(path))["results"] if r["command"] == tool)
print(f"{fs}\t{tool}\t{r['median']:.4f}\t{r['min']:.4f}\t{r['mean']:.4f}\t{rss}")
EOF
        done
        clean_store "$root"
        rm -rf "$base"
    done
else
    log "skipping the image-list comparison: this stowage has no \`image cmd list\` yet"
fi

# 5. summary
copy_summary "$RAW" "oci → containers-storage"
python3 - "$LIST_RAW" "$LIST_IMAGES" <<'EOF'
import csv, sys
lrows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
if lrows:
    print(f"\n## image list with {sys.argv[2]} images (hyperfine; milliseconds)\n")
    print("| fs | tool | median | min | peak RSS MB | podman/stowage (median) |")
    print("|---|---|---|---|---|---|")
    by = {(r["fs"], r["tool"]): r for r in lrows}
    for r in lrows:
        ratio = ""
        if r["tool"] == "podman" and (r["fs"], "stowage") in by:
            ratio = f"{float(r['median_s']) / float(by[(r['fs'], 'stowage')]['median_s']):.1f}x"
        print(f"| {r['fs']} | {r['tool']} | {float(r['median_s'])*1000:.1f} | {float(r['min_s'])*1000:.1f} "
              f"| {int(r['maxrss_kb'])/1024:.0f} | {ratio} |")
EOF
log "raw results in $OUT"
