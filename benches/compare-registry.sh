#!/bin/bash
# compare-registry.sh — pulling from a registry into containers-storage: stowage vs skopeo vs
# podman, on tmpfs and on disk; and stowage's peak memory with one large layer.
#
# Usage: benches/compare-registry.sh [RUNS]
#   RUNS        alternating runs per tool and case (default 7; env RUNS works too)
# Environment:
#   CACHE       where test images are built once and reused (default /var/tmp/stowage-bench-cache;
#               the OS image is CACHE/os/{gzip,zstd}, the large ones CACHE/large-SIZEm/{gzip,zstd})
#   OUT         where raw results go (default CACHE/registry-DATE)
#   FILESYSTEMS space-separated NAME=DIR pairs to pull into (default "tmpfs=/dev/shm disk=/var/tmp")
#   TOOLS       the pullers to compare (default "stowage skopeo podman")
#   STOWAGE     a stowage binary to use instead of building one
#   FIXTURES    a stowage-fixtures binary to use instead of building one
#   REGISTRY_DIR where the registry keeps its blobs (default a new directory in /dev/shm, so that
#               serving them costs no disk reads; removed on exit)
#   LARGE_MIB   sizes in MiB of the one-layer images for the memory test (default "64 1024";
#               empty skips it); LARGE_RUNS runs per tool and size (default 3); LARGE_FS the
#               directory to pull them into (default /dev/shm)
#   SETTLE, NICE as in compare-cstorage.sh (65 s before disk runs; niceness -15 for the timed
#               commands and this script's scheduler autogroup)
#
# Not run in CI: needs root (overlay stores), docker-registry, skopeo, podman, python3, and
# for the first run network access to deb.debian.org (fixtures/make-os-image.sh).
#
# 1. Build release `stowage` (unless STOWAGE is set), release `stowage-fixtures` (the test-image
#    builder, for step 5) and the OS image (unless cached).
# 2. Start Debian's `docker-registry` on 127.0.0.1 with a free port, plain http, filesystem
#    storage in REGISTRY_DIR; it is stopped when the script exits (also on error or Ctrl-C).
# 3. Push the OS image as os:gzip and os:zstd with `skopeo copy --preserve-digests`
#    (without it skopeo 1.9 answers the second push from its blob-info cache by reusing the
#    gzip layers it has just pushed, so os:zstd would hold gzip layers) and check that the
#    registry serves the very manifests of the OCI layouts.
# 4. For each filesystem, compression and run, pull os:C into a fresh containers-storage root
#    with each tool, rotating which goes first:
#      stowage copy --src-tls-verify=false docker://… containers-storage:[overlay@ROOT+RUNROOT]…
#      skopeo --tmpdir DIR copy --src-tls-verify=false docker://… containers-storage:[…]…
#      TMPDIR=DIR podman --root ROOT --runroot RUNROOT pull --tls-verify=false …
#    (skopeo and podman stage every blob in a temporary directory before applying it; it is
#    kept on the filesystem under test). Each is timed with /usr/bin/time (wall, user, sys,
#    peak RSS of the largest process) after a `sync`; every result is checked with
#    `podman image inspect` (the image's ID must be the config digest). As in
#    compare-cstorage.sh, roots are only removed when a filesystem's runs are over, and the
#    disk runs start after `sync` and SETTLE seconds without deletions.
# 5. Memory with one large layer: for each size in LARGE_MIB, an image whose only layer is one
#    file of base64 text of pseudo-random bytes (deflate gets it to ~76%, so inflate does real
#    Huffman decoding; zstd likewise) is written once into CACHE (gzip by `stowage-fixtures
#    --large-text`, zstd by skopeo), pushed, and pulled LARGE_RUNS times by each tool into LARGE_FS; peak RSS and
#    time are recorded, each result is checked, and the store is removed after each pull.
# 6. Print Markdown tables (medians, minima, ratios TOOL/stowage, CPU, RSS); raw numbers in OUT.
set -euo pipefail

RUNS=${1:-${RUNS:-7}}
NICE=${NICE:--15}
CACHE=${CACHE:-/var/tmp/stowage-bench-cache}
FILESYSTEMS=${FILESYSTEMS:-"tmpfs=/dev/shm disk=/var/tmp"}
TOOLS=${TOOLS:-"stowage skopeo podman"}
LARGE_MIB=${LARGE_MIB-"64 1024"}
LARGE_RUNS=${LARGE_RUNS:-3}
LARGE_FS=${LARGE_FS:-/dev/shm}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$CACHE/registry-$(date +%Y%m%d-%H%M%S)}
BENCH=compare-registry.sh
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"

require_root "containers-storage overlay stores keep owners and device nodes"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number, got '$RUNS'"
[[ $LARGE_RUNS =~ ^[1-9][0-9]*$ ]] || die "LARGE_RUNS must be a positive number, got '$LARGE_RUNS'"
require_tools docker-registry skopeo podman python3 curl
ensure_gnu_time
mkdir -p "$CACHE" "$OUT"
raise_autogroup

# 1. stowage, the image builder and the OS image
build_stowage
build_fixtures
ensure_os_image

# 2. the registry
if [ -z "${REGISTRY_DIR:-}" ]; then
    REGISTRY_DIR=$(mktemp -d /dev/shm/stowage-registry.XXXXXX)
    # shellcheck disable=SC2016 # expanded when the hook runs
    on_exit 'rm -rf "$REGISTRY_DIR"'
fi
mkdir -p "$REGISTRY_DIR/storage"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
cat >"$REGISTRY_DIR/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/storage
http:
  addr: $REG
  secret: stowage-bench
EOF
docker-registry serve "$REGISTRY_DIR/config.yml" >"$REGISTRY_DIR/registry.log" 2>&1 &
REGISTRY_PID=$!
# shellcheck disable=SC2016
on_exit 'kill "$REGISTRY_PID" 2>/dev/null; wait "$REGISTRY_PID" 2>/dev/null'
for _ in $(seq 1 200); do
    kill -0 "$REGISTRY_PID" 2>/dev/null || { cat "$REGISTRY_DIR/registry.log" >&2; die "docker-registry exited"; }
    curl --noproxy '*' -fsS -o /dev/null "http://$REG/v2/" 2>/dev/null && break
    sleep 0.05
done
curl --noproxy '*' -fsS -o /dev/null "http://$REG/v2/" || die "docker-registry does not answer on $REG"
log "docker-registry on $REG, storage in $REGISTRY_DIR"

# manifest_digest LAYOUT: the digest of the manifest tagged in an OCI layout (one entry).
manifest_digest() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$1/index.json"
}
# config_id LAYOUT: the hex of the image's config digest (= the image ID in containers-storage).
config_id() {
    local m
    m=$(manifest_digest "$1")
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["config"]["digest"].split(":")[1])' \
        "$1/blobs/sha256/${m#sha256:}"
}

# push LAYOUT TAG REPO:TAG: push the image tagged TAG in LAYOUT with its own bytes, and
# check that the registry serves the same manifest.
push() {
    local layout=$1 tag=$2 dest=$3 want got
    skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$layout:$tag" "docker://$REG/$dest" >&2
    want=$(manifest_digest "$layout")
    got=sha256:$(curl --noproxy '*' -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$REG/v2/${dest%%:*}/manifests/${dest#*:}" | sha256sum | cut -d' ' -f1)
    [ "$want" = "$got" ] || die "the registry serves $dest as $got, the layout has $want"
}

# 3. push
for c in gzip zstd; do
    log "pushing $CACHE/os/$c as $REG/os:$c"
    push "$CACHE/os/$c" os "os:$c"
done

RAW=$OUT/pull.tsv
printf 'fs\tcompression\trun\ttool\twall_s\tuser_s\tsys_s\tmaxrss_kb\tload1\n' >"$RAW"

# pull TOOL SRC(repo:tag) ROOT RUN_ROOT TMP TIMEFILE: one timed pull into a fresh store; prints
# the name the image got.
pull() {
    local tool=$1 src=$2 root=$3 run_root=$4 tmp=$5 t=$6
    local dst="containers-storage:[overlay@$root+$run_root]localhost/bench:1"
    local cmd name=localhost/bench:1
    case $tool in
        stowage) cmd=("$STOWAGE" -q copy --src-tls-verify=false "docker://$REG/$src" "$dst") ;;
        skopeo) cmd=(skopeo --tmpdir "$tmp" copy -q --src-tls-verify=false "docker://$REG/$src" "$dst") ;;
        # podman has no --tmpdir for blobs; containers/common reads TMPDIR (image_copy_tmp_dir).
        podman)
            cmd=(env TMPDIR="$tmp" podman --root "$root" --runroot "$run_root" pull -q --tls-verify=false "$REG/$src")
            name=$REG/$src
            ;;
        *) die "unknown tool $tool (TOOLS may name stowage, skopeo, podman)" ;;
    esac
    mkdir -p "$tmp"
    sync
    timed "$t" "${cmd[@]}"
    echo "$name"
}

# check ROOT RUN_ROOT NAME ID: the store has NAME with image ID ID.
check() {
    local got
    got=$(podman --root "$1" --runroot "$2" image inspect --format '{{.Id}}' "$3" 2>&1) \
        || die "podman does not find $3 in $1: $got"
    [ "$got" = "$4" ] || die "$3 in $1 has ID $got, expected $4"
}

# 4. pulls of the OS image
for pair in $FILESYSTEMS; do
    fs=${pair%%=*}
    fs_dir "$fs" "${pair#*=}"
    dir=$FS_DIR
    [ -d "$dir" ] || { log "skipping $fs: $dir does not exist"; continue; }
    # (short: podman refuses run roots longer than 50 characters)
    base=$(mktemp -d "$dir/st-reg.XXXXXX")
    on_exit "for r in '$base'/*-root; do clean_store \"\$r\"; done; rm -rf '$base'"
    settle "$fs"
    for c in gzip zstd; do
        id=$(config_id "$CACHE/os/$c")
        for run in $(seq 1 "$RUNS"); do
            for tool in $(order "$run"); do
                log "$fs $c run $run/$RUNS: $tool"
                root=$base/$c-$run-$tool-root run_root=$base/$c-$run-$tool-run
                load=$(cut -d' ' -f1 /proc/loadavg)
                name=$(pull "$tool" "os:$c" "$root" "$run_root" "$base/$c-$run-$tool-tmp" "$OUT/time")
                printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$fs" "$c" "$run" "$tool" "$(tail -1 "$OUT/time")" "$load" >>"$RAW"
                check "$root" "$run_root" "$name" "$id"
            done
        done
    done
    for root in "$base"/*-root; do clean_store "$root"; done
    rm -rf "$base"
done

# 5. one large layer
# make_large DIR MIB: an OCI layout DIR/gzip (tag `large`) with one gzip layer holding
# big/data, MIB MiB of base64 text of pseudo-random bytes, streamed to disk by the one test-image
# builder (`stowage-fixtures DIR --large-text MIB`); DIR/zstd converted by skopeo.
make_large() {
    local dir=$1 mib=$2
    rm -rf "$dir"
    mkdir -p "$dir"
    log "writing a one-layer image of $mib MiB into $dir"
    "$FIXTURES" "$dir/gzip" --large-text "$mib" >&2
    skopeo copy -q --dest-compress-format zstd "oci:$dir/gzip:large" "oci:$dir/zstd:large" >&2
}

LARGE_RAW=$OUT/large.tsv
printf 'mib\tcompression\tlayer_bytes\trun\ttool\twall_s\tuser_s\tsys_s\tmaxrss_kb\n' >"$LARGE_RAW"
for mib in $LARGE_MIB; do
    [[ $mib =~ ^[1-9][0-9]*$ ]] || die "LARGE_MIB must list sizes in MiB, got '$mib'"
    dir=$CACHE/large-${mib}m
    if [ ! -f "$dir/gzip/index.json" ] || [ ! -f "$dir/zstd/index.json" ]; then
        make_large "$dir" "$mib"
    fi
    base=$(mktemp -d "$LARGE_FS/st-large.XXXXXX")
    on_exit "for r in '$base'/*-root; do clean_store \"\$r\"; done; rm -rf '$base'"
    for c in gzip zstd; do
        log "pushing $dir/$c as $REG/large:$mib-$c"
        push "$dir/$c" large "large:$mib-$c"
        id=$(config_id "$dir/$c")
        m=$(manifest_digest "$dir/$c")
        bytes=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["layers"][0]["size"])' \
            "$dir/$c/blobs/sha256/${m#sha256:}")
        for run in $(seq 1 "$LARGE_RUNS"); do
            for tool in $(order "$run"); do
                log "large $mib MiB $c run $run/$LARGE_RUNS: $tool"
                root=$base/root run_root=$base/run
                name=$(pull "$tool" "large:$mib-$c" "$root" "$run_root" "$base/tmp" "$OUT/time")
                printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$mib" "$c" "$bytes" "$run" "$tool" "$(tail -1 "$OUT/time")" >>"$LARGE_RAW"
                check "$root" "$run_root" "$name" "$id"
                clean_store "$root"
                rm -rf "$run_root" "$base/tmp"
            done
        done
    done
    rm -rf "$base"
done

# 6. summary
copy_summary "$RAW" "docker:// (local registry) → containers-storage"
python3 - "$LARGE_RAW" <<'EOF'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
if rows:
    print("\n## one large layer (tmpfs; seconds; RSS = peak, MiB)\n")
    print("| layer tar | layer blob | tool | runs | median wall | median CPU | median RSS | max RSS |")
    print("|---|---|---|---|---|---|---|---|")
    groups = {}
    for r in rows:
        groups.setdefault((r["mib"], r["compression"], r["layer_bytes"], r["tool"]), []).append(r)
    for (mib, c, size, tool), v in groups.items():
        print(f"| {mib} MiB | {c}, {int(size) / 2**20:.0f} MiB | {tool} | {len(v)} "
              f"| {st.median(float(r['wall_s']) for r in v):.2f} "
              f"| {st.median(float(r['user_s']) + float(r['sys_s']) for r in v):.2f} "
              f"| {st.median(int(r['maxrss_kb']) for r in v) / 1024:.0f} "
              f"| {max(int(r['maxrss_kb']) for r in v) / 1024:.0f} |")
EOF
log "raw results in $OUT"
