#!/bin/bash
# compare-export.sh — exporting containers-storage → OCI layout (the layers compressed on the
# way): stowage vs skopeo, on tmpfs.
#
# Usage: benches/compare-export.sh [RUNS]
#   RUNS        alternating runs per tool and compression (default 5; env RUNS works too)
# Environment:
#   CACHE       where the source image is built once and reused (default
#               /var/tmp/stowage-bench-cache; the image is CACHE/export-MIBm, tag `large`)
#   OUT         where raw results go (default CACHE/results-export-DATE)
#   IMAGES      which source images (default "usr text"):
#               usr  — one layer: a tar of this host's /usr/lib/python3*, perl, gconv, vim,
#                      i18n, zoneinfo, libexec and locale/[a-f]* (about 270 MB on Debian 12:
#                      Python, Perl, shared objects, binaries, translations; compresses to ~32%),
#                      made with `tar` and stored with `podman import`;
#               text — one layer of MIB MiB of base64 text of pseudo-random bytes
#                      (`stowage-fixtures --large-text`; compresses to ~76%: few matches);
#               os   — the OS image of fixtures/make-os-image.sh, when CACHE/os/gzip exists
#   MIB         MiB of the text layer (default 256)
#   DIR         the tmpfs to run on (default /dev/shm)
#   STOWAGE     a stowage binary to use instead of building one
#   FIXTURES    a stowage-fixtures binary to use instead of building one
#   NICE        niceness of the timed commands and of this script's autogroup (default -15,
#               see benches/lib.sh)
#   THREADS1    1 (default): also time stowage with --compress-threads 1 (tool `stowage-1t`)
#
# Not run in CI: needs root (overlay stores), skopeo, podman, gzip, zstd.
#
# 1. Build stowage and stowage-fixtures in release mode (unless STOWAGE / FIXTURES are set).
# 2. Make the source images (IMAGES) and store them in one containers-storage store on DIR:
#    the source both tools export from.
# 3. For each compression (gzip, zstd) and each run, export the stored image to a fresh OCI
#    layout on DIR with `stowage copy` and `skopeo copy` (`--dest-compress-format zstd` for
#    zstd; containers-storage keeps uncompressed diffs, so both compress every layer),
#    alternating which goes first; each timed by /usr/bin/time (wall, user, sys, peak RSS).
# 4. Check the first output of each tool: every layer blob passes `gzip -t` / `zstd -t`, and
#    the stowage layout copies back into a fresh store with skopeo, where `podman image exists`
#    sees it and the diffIDs are the source's. Outputs are removed after each run.
# 5. Print medians, minima, ratios (skopeo/stowage) and peak RSS as a Markdown table, and the
#    layer bytes each tool wrote; raw numbers stay in OUT.
set -euo pipefail

RUNS=${1:-${RUNS:-5}}
NICE=${NICE:--15}
MIB=${MIB:-256}
DIR=${DIR:-/dev/shm}
THREADS1=${THREADS1:-1}
CACHE=${CACHE:-/var/tmp/stowage-bench-cache}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$CACHE/results-export-$(date +%Y%m%d-%H%M%S)}
NAME=localhost/export:1
BENCH=compare-export.sh
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"

require_root "containers-storage overlay stores keep owners"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number, got '$RUNS'"
[[ $MIB =~ ^[1-9][0-9]*$ ]] || die "MIB must be a positive number of MiB, got '$MIB'"
[ -d "$DIR" ] || die "$DIR does not exist; set DIR to a tmpfs directory"
require_tools skopeo podman gzip zstd python3
ensure_gnu_time
mkdir -p "$CACHE" "$OUT"
raise_autogroup

# 1. binaries
build_stowage
build_fixtures

# 2. the source images, in a store on DIR
base=$(mktemp -d "$DIR/stowage-export.XXXXXX")
on_exit "clean_store '$base/src-root'; clean_store '$base/check-root'; rm -rf '$base'"
src_root=$base/src-root src_run=$base/src-run
store() { echo "containers-storage:[overlay@$src_root+$src_run]localhost/$1:1"; }
sources=()
for img in ${IMAGES:-usr text}; do
    case $img in
        usr)
            dirs=()
            for d in /usr/lib/python3* /usr/lib/x86_64-linux-gnu/perl /usr/lib/x86_64-linux-gnu/gconv \
                /usr/share/perl /usr/share/vim /usr/share/i18n /usr/share/zoneinfo /usr/libexec \
                /usr/share/locale/[a-f]*; do
                [ -e "$d" ] && dirs+=("${d#/}")
            done
            log "storing a tar of ${#dirs[@]} directories of this host's /usr as localhost/usr:1"
            tar -C / -cf "$base/usr.tar" "${dirs[@]}"
            podman --root "$src_root" --runroot "$src_run" import -q "$base/usr.tar" localhost/usr:1 >/dev/null
            rm -f "$base/usr.tar"
            sources+=(usr)
            ;;
        text)
            image=$CACHE/export-${MIB}m
            if [ ! -f "$image/index.json" ]; then
                rm -rf "$image"
                log "writing a one-layer image of $MIB MiB into $image"
                "$FIXTURES" "$image" --large-text "$MIB" >&2
            fi
            skopeo copy -q "oci:$image:large" "$(store text)" >&2
            sources+=(text)
            ;;
        os)
            [ -f "$CACHE/os/gzip/index.json" ] || die "IMAGES=os needs CACHE/os/gzip (benches/compare-cstorage.sh builds it)"
            skopeo copy -q "oci:$CACHE/os/gzip:os" "$(store os)" >&2
            sources+=(os)
            ;;
        *) die "unknown image '$img' in IMAGES (usr, text, os)" ;;
    esac
done

RAW=$OUT/export.tsv
printf 'fs\tcompression\trun\ttool\twall_s\tuser_s\tsys_s\tmaxrss_kb\tload1\n' >"$RAW"

SIZES=$OUT/sizes.tsv
printf 'image\tcompression\ttool\tlayer_bytes\n' >"$SIZES"

# layer_bytes LAYOUT: the summed sizes of the layers of the one image in LAYOUT.
layer_bytes() {
    python3 - "$1" <<'EOF'
import json, sys
d = sys.argv[1]
blob = lambda dg: open(f"{d}/blobs/sha256/{dg.split(':')[1]}", "rb").read()
m = json.loads(blob(json.load(open(f"{d}/index.json"))["manifests"][0]["digest"]))
print(sum(l["size"] for l in m["layers"]))
EOF
}

# diff_ids LAYOUT: the config's diffIDs of the one image in LAYOUT, one line.
diff_ids() {
    python3 - "$1" <<'EOF'
import json, sys
d = sys.argv[1]
blob = lambda dg: open(f"{d}/blobs/sha256/{dg.split(':')[1]}", "rb").read()
m = json.loads(blob(json.load(open(f"{d}/index.json"))["manifests"][0]["digest"]))
print(" ".join(json.loads(blob(m["config"]["digest"]))["rootfs"]["diff_ids"]))
EOF
}

# check_layout TOOL C LAYOUT IMG: every layer blob passes gzip -t / zstd -t; stowage's output
# also goes back into a store with skopeo, and podman sees it with the source's diffIDs.
check_layout() {
    local tool=$1 c=$2 layout=$3 img=$4 blob
    while read -r blob; do
        case $c in
            gzip) gzip -t "$layout/blobs/sha256/$blob" || die "$tool: gzip -t rejects $blob" ;;
            zstd) zstd -q -t "$layout/blobs/sha256/$blob" || die "$tool: zstd -t rejects $blob" ;;
        esac
    done < <(python3 - "$layout" <<'EOF'
import json, sys
d = sys.argv[1]
blob = lambda dg: open(f"{d}/blobs/sha256/{dg.split(':')[1]}", "rb").read()
m = json.loads(blob(json.load(open(f"{d}/index.json"))["manifests"][0]["digest"]))
for l in m["layers"]:
    print(l["digest"].split(":")[1])
EOF
    )
    if [ "$tool" = stowage ]; then
        local root=$base/check-root run=$base/check-run
        skopeo copy -q "oci:$layout:x" "containers-storage:[overlay@$root+$run]localhost/check:$c" >&2
        podman --root "$root" --runroot "$run" image exists "localhost/check:$c" \
            || die "podman does not see the image stowage exported ($layout)"
        [ "$(diff_ids "$layout")" = "$want_ids" ] || die "stowage's export of $img changed the diffIDs"
    fi
}

# run_export IMG C RUN TOOL: one timed export of localhost/IMG:1 into a fresh layout.
run_export() {
    local img=$1 c=$2 run=$3 tool=$4
    local src
    src=$(store "$img")
    local layout=$base/out-$img-$c-$run-$tool
    local t=$OUT/time.$$ extra=() cmd
    [ "$c" = zstd ] && extra=(--dest-compress-format zstd)
    case $tool in
        stowage) cmd=("$STOWAGE" -q copy "${extra[@]}" "$src" "oci:$layout:x") ;;
        stowage-1t) cmd=("$STOWAGE" -q copy --compress-threads 1 "${extra[@]}" "$src" "oci:$layout:x") ;;
        skopeo) cmd=(skopeo --tmpdir "$base" copy -q "${extra[@]}" "$src" "oci:$layout:x") ;;
    esac
    sync
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    log "$img $c run $run/$RUNS: $tool"
    timed "$t" "${cmd[@]}"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "tmpfs-$img" "$c" "$run" "$tool" "$(tail -1 "$t")" "$load" >>"$RAW"
    if [ "$run" = 1 ]; then
        check_layout "$tool" "$c" "$layout" "$img"
        printf '%s\t%s\t%s\t%s\n' "$img" "$c" "$tool" "$(layer_bytes "$layout")" >>"$SIZES"
    fi
    rm -rf "$layout" "$t"
}

# 3. exports
tools="stowage skopeo"
[ "$THREADS1" = 1 ] && tools="stowage skopeo stowage-1t"
for img in "${sources[@]}"; do
    want_ids=$(skopeo inspect --config "$(store "$img")" \
        | python3 -c 'import json, sys; print(" ".join(json.load(sys.stdin)["rootfs"]["diff_ids"]))')
    for c in gzip zstd; do
        for run in $(seq 1 "$RUNS"); do
            order=$tools
            if [ $((run % 2)) = 0 ]; then order=$(echo "$tools" | awk '{ t = $1; $1 = $2; $2 = t; print }'); fi
            for tool in $order; do
                run_export "$img" "$c" "$run" "$tool"
            done
        done
    done
done

# 5. summary
echo "machine: $(nproc) CPUs; $(uname -r); stowage $("$STOWAGE" --version 2>/dev/null | head -1); $(skopeo --version)"
copy_summary "$RAW" "containers-storage → OCI layout (export)"
python3 - "$SIZES" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("\n## layer bytes written (MB; ratio = TOOL/stowage)\n")
print("| image | layers | tool | MB | ratio |")
print("|---|---|---|---|---|")
by = {(r["image"], r["compression"], r["tool"]): int(r["layer_bytes"]) for r in rows}
for r in rows:
    s = by.get((r["image"], r["compression"], "stowage"))
    n = int(r["layer_bytes"])
    print(f"| {r['image']} | {r['compression']} | {r['tool']} | {n / 1e6:.1f} | {n / s:.3f} |")
EOF
log "raw results in $OUT"
