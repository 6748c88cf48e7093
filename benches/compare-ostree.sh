#!/bin/bash
# compare-ostree.sh — stowage's ostree import and export against ostree and skopeo, in one run.
#
# Usage: benches/compare-ostree.sh [RUNS]
#   RUNS        alternating runs per tool and case (default 5; env RUNS works too)
# Environment: CACHE, OUT, FILESYSTEMS, STOWAGE, SETTLE, NICE as for compare-cstorage.sh;
#   EXPORT_COMPRESSION  the export cases (default "gzip zstd"; zstd asked of both tools with
#                       --dest-compress-format zstd, rows `export-zstd`).
#
# Not run in CI: needs root, ostree, skopeo, python3 and the OS-sized image of
# fixtures/make-os-image.sh (built once into CACHE/os; needs the Debian mirror the first time).
#
# 1. Build stowage (release) and the OS image (5 gzip layers, 140 MB of tar).
# 2. Prepare, untimed, what ostree-rs-ext feeds `ostree commit` per layer: each layer
#    decompressed and filtered as ostree-rs-ext's filter_tar does (`etc` → `usr/etc`, the
#    content of dev/proc/run/sys/tmp dropped), as a plain tar. The baseline thus leaves out
#    the decompression and filtering that ostree-rs-ext does in Rust before ostree sees a byte,
#    so it favours ostree.
# 3. import: per run, into a fresh bare-user repository on the filesystem under test,
#    `ostree commit --tree=tar=LAYER.tar --tar-autocreate-parents --no-bindings` for each
#    layer in turn (what ostree-rs-ext runs) vs `stowage copy oci:…:os ostree:[REPO]…` — which
#    also decompresses, verifies digests and diffIDs, records tar-splits and writes the merged
#    image commit. Alternating which goes first.
# 4. export: the image stowage imported, `stowage copy ostree:[REPO]… oci:DIR:os` vs `skopeo
#    copy containers-storage:[…]… oci:DIR:os` of the same image (put into a store once,
#    untimed), both into a fresh layout, compressing the layers with gzip (both tools'
#    default) and then with zstd (EXPORT_COMPRESSION).
# 5. encapsulated (when ostree-rs-ext's CLI is built: OSTREE_EXT_CLI, default
#    target/ostree-ext-cli/release/ostree-ext-cli, what .ci/run builds): the image commit
#    stowage imported is encapsulated by `ostree-ext-cli container encapsulate` (one ostree
#    layer, as bootc base images are built) and a derived layer (800 files, 24 MB) is added
#    by `umoci raw add-layer`, untimed; then, into a fresh bare-user repository each,
#    `ostree-ext-cli container image pull REPO ostree-unverified-image:oci:…` vs `stowage
#    copy oci:… ostree:[REPO]…`, alternating. Both import the ostree layer as a commit and the
#    derived layer on top of it.
# 6. The tables: medians, minima, peak RSS and TOOL/stowage ratios (copy_summary).
set -euo pipefail

RUNS=${1:-${RUNS:-5}}
NICE=${NICE:--15}
CACHE=${CACHE:-/var/tmp/stowage-bench-cache}
FILESYSTEMS=${FILESYSTEMS:-"tmpfs=/dev/shm disk=/var/tmp"}
EXPORT_COMPRESSION=${EXPORT_COMPRESSION:-"gzip zstd"}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$CACHE/results-ostree-$(date +%Y%m%d-%H%M%S)}
BENCH=compare-ostree.sh
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"

require_root "bare-user repositories keep owners; containers-storage for the export baseline"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number, got '$RUNS'"
require_tools ostree skopeo podman python3 umoci
OSTREE_EXT=${OSTREE_EXT_CLI:-$REPO/target/ostree-ext-cli/release/ostree-ext-cli}
ensure_gnu_time
mkdir -p "$CACHE" "$OUT"
raise_autogroup

# 1.
build_stowage
ensure_os_image
SRC="oci:$CACHE/os/gzip:os"

# 2. filtered plain layer tars, as ostree-rs-ext hands them to `ostree commit`
TARS=$CACHE/os/ostree-tars
if [ ! -f "$TARS/done" ]; then
    log "preparing filtered layer tars in $TARS"
    rm -rf "$TARS"
    mkdir -p "$TARS"
    python3 - "$CACHE/os/gzip" "$TARS" <<'EOF'
import gzip, json, sys, tarfile, os
layout, out = sys.argv[1], sys.argv[2]
index = json.load(open(f"{layout}/index.json"))
blob = lambda d: f"{layout}/blobs/sha256/{d.split(':')[1]}"
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
def mapped(name):
    n = name.lstrip("./").lstrip("/")
    top, _, rest = n.partition("/")
    if top in ("dev", "proc", "run", "sys", "tmp") and rest:
        return None
    if top == "etc":
        return "usr/etc" + ("/" + rest if rest else "")
    return n
for i, layer in enumerate(manifest["layers"]):
    with gzip.open(blob(layer["digest"])) as f, tarfile.open(fileobj=f, mode="r|") as src, \
         tarfile.open(f"{out}/{i:02}.tar", "w", format=tarfile.PAX_FORMAT) as dst:
        for m in src:
            n = mapped(m.name)
            if n is None or n == "":
                continue
            m.name = "./" + n
            if m.islnk():
                m.linkname = "./" + (mapped(m.linkname) or m.linkname)
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
EOF
    touch "$TARS/done"
fi

RAW=$OUT/copy.tsv
printf 'fs\tcompression\trun\ttool\twall_s\tuser_s\tsys_s\tmaxrss_kb\tload1\n' >"$RAW"

# record FS CASE RUN TOOL TIMEFILE
record() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$(tail -1 "$5")" "$(cut -d' ' -f1 /proc/loadavg)" >>"$RAW"
}

# ostree_import REPO: every filtered layer tar committed in turn, as ostree-rs-ext does.
ostree_import() {
    local repo=$1 t
    for t in "$TARS"/*.tar; do
        ostree --repo="$repo" commit --tree=tar="$t" --tar-autocreate-parents --no-bindings \
            --branch="bench/$(basename "$t" .tar)" --timestamp=0 >/dev/null
    done
}
export -f ostree_import
export TARS

for pair in $FILESYSTEMS; do
    fs=${pair%%=*}
    fs_dir "$fs" "${pair#*=}"
    dir=$FS_DIR
    [ -d "$dir" ] || { log "skipping $fs: $dir does not exist"; continue; }
    base=$(mktemp -d "$dir/stowage-compare-ostree.XXXXXX")
    on_exit "rm -rf '$base'"
    settle "$fs"
    # 3. import
    for run in $(seq 1 "$RUNS"); do
        if [ $((run % 2)) = 1 ]; then order="stowage ostree"; else order="ostree stowage"; fi
        for tool in $order; do
            repo=$base/import-$run-$tool
            ostree init --repo="$repo" --mode=bare-user
            sync
            log "$fs import run $run/$RUNS: $tool"
            case $tool in
                stowage) timed "$OUT/t" "$STOWAGE" -q copy "$SRC" "ostree:[$repo]localhost/os:1" ;;
                ostree) timed "$OUT/t" bash -c 'ostree_import "$1"' _ "$repo" ;;
            esac
            record "$fs" import "$run" "$tool" "$OUT/t"
            if [ "$tool" = stowage ] && [ "$run" = 1 ]; then
                ostree --repo="$repo" fsck >/dev/null || die "ostree fsck fails on stowage's import"
            fi
        done
    done
    keep=$base/import-1-stowage
    # 4. export
    store=$base/store
    "$STOWAGE" -q copy "$SRC" "containers-storage:[overlay@$store/root+$store/run]localhost/os:1"
    for comp in $EXPORT_COMPRESSION; do
        # gzip is both tools' default; zstd is asked of both the same way.
        case $comp in
            gzip) label=export; flags=() ;;
            zstd) label=export-zstd; flags=(--dest-compress-format zstd) ;;
            *) die "EXPORT_COMPRESSION: unknown compression '$comp' (gzip, zstd)" ;;
        esac
        for run in $(seq 1 "$RUNS"); do
            if [ $((run % 2)) = 1 ]; then order="stowage skopeo"; else order="skopeo stowage"; fi
            for tool in $order; do
                dst=$base/export-$run-$tool
                sync
                log "$fs $label run $run/$RUNS: $tool"
                case $tool in
                    stowage) timed "$OUT/t" "$STOWAGE" -q copy "${flags[@]}" \
                        "ostree:[$keep]localhost/os:1" "oci:$dst:os" ;;
                    skopeo) timed "$OUT/t" skopeo --tmpdir "$base" copy -q "${flags[@]}" \
                        "containers-storage:[overlay@$store/root+$store/run]localhost/os:1" "oci:$dst:os" ;;
                esac
                record "$fs" "$label" "$run" "$tool" "$OUT/t"
                rm -rf "$dst"
            done
        done
    done
    # 5. encapsulated image with a derived layer: ostree-rs-ext's pull vs stowage's
    if [ -x "$OSTREE_EXT" ]; then
        enc=$base/encapsulated
        image_ref=$(ostree --repo="$keep" refs | grep '^ostree/container/image/' | head -1)
        "$OSTREE_EXT" container encapsulate --repo="$keep" "$image_ref" "oci:$enc:base" >/dev/null
        python3 - "$base/derived.tar" <<'EOF'
import io, random, sys, tarfile
rng = random.Random(7)
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, data=None, mode=0o644):
        i = tarfile.TarInfo(name)
        i.mtime, i.mode = 1700000000, mode
        if data is None:
            i.type, i.mode = tarfile.DIRTYPE, 0o755
            t.addfile(i)
        else:
            i.size = len(data)
            t.addfile(i, io.BytesIO(data))
    for d in ("usr", "usr/lib", "usr/lib/app", "usr/share", "usr/share/app", "etc"):
        add(d)
    add("etc/app.conf", b"threads = 4\n")
    for n in range(800):
        size = rng.choice((200, 2000, 20000, 60000))
        add(f"usr/share/app/f{n:04}", rng.randbytes(size))
    add("usr/lib/app/blob", rng.randbytes(8 << 20), 0o755)
EOF
        umoci raw add-layer --image "$enc:base" --tag derived "$base/derived.tar" >/dev/null
        for run in $(seq 1 "$RUNS"); do
            if [ $((run % 2)) = 1 ]; then order="stowage ostree-ext"; else order="ostree-ext stowage"; fi
            for tool in $order; do
                repo=$base/encap-$run-$tool
                ostree init --repo="$repo" --mode=bare-user
                sync
                log "$fs encapsulated run $run/$RUNS: $tool"
                case $tool in
                    stowage) timed "$OUT/t" "$STOWAGE" -q copy "oci:$enc:derived" "ostree:[$repo]localhost/derived:1" ;;
                    ostree-ext) timed "$OUT/t" "$OSTREE_EXT" container image pull "$repo" \
                        "ostree-unverified-image:oci:$enc:derived" ;;
                esac
                record "$fs" encapsulated "$run" "$tool" "$OUT/t"
                if [ "$run" = 1 ]; then
                    ostree --repo="$repo" fsck >/dev/null || die "ostree fsck fails on $tool's import"
                fi
                rm -rf "$repo"
            done
        done
    else
        log "skipping the encapsulated case: no ostree-rs-ext CLI at $OSTREE_EXT (bash .ci/run builds it)"
    fi
    clean_store "$store/root"
    rm -rf "$base"
done

copy_summary "$RAW" "ostree import (5 layers into bare-user), import of an encapsulated image with a derived layer, and export (ostree → oci:, gzip; export-zstd: both with --dest-compress-format zstd)" | tee "$OUT/summary.md"
log "raw results in $OUT"
