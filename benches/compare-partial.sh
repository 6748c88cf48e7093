#!/bin/bash
# compare-partial.sh — zstd:chunked partial pulls into containers-storage: stowage vs podman
# (partial pulls enabled), pulling version 2 of an image whose version 1 is in the store.
#
# Usage: benches/compare-partial.sh [RUNS]
#   RUNS      alternating runs per tool (default 5; env RUNS works too)
# Environment:
#   FILES     regular files in the image (default 1000), each SIZE_KIB KiB of pseudo-random
#             bytes (default 64); CHANGED_PCT of them (default 5) differ in version 2
#   DIR       where the stores go (default /dev/shm)
#   OUT       where raw results go (default /var/tmp/stowage-bench-cache/partial-DATE)
#   STOWAGE   a stowage binary to use instead of building one (release)
#   NICE      niceness of the timed commands and this script's autogroup (default -15)
#
# Not run in CI: needs root (overlay stores), docker-registry, podman, python3, curl.
#
# 1. Build release stowage (unless STOWAGE is set). Write the two images as OCI layouts with
#    python3 (one uncompressed layer each; the same files, CHANGED_PCT% with other content,
#    fixed mtimes), and push both with `stowage copy --dest-compress-format zstd:chunked`.
# 2. Start docker-registry on 127.0.0.1 (storage in DIR) with its access log on: every
#    response's byte count is in it, for both tools alike.
# 3. Each run, for each tool in alternating order, into a fresh store in DIR: pull v1
#    (untimed), then `sync` and pull v2 timed with /usr/bin/time:
#      stowage copy --src-tls-verify=false docker://REG/partial:2 containers-storage:[…]…
#      CONTAINERS_STORAGE_CONF=(graphroot, runroot, pull_options enable_partial_images=true)
#        podman pull --tls-verify=false REG/partial:2
#    The registry log's lines written during the timed pull give the bytes the tool fetched
#    (blob bodies; 206 ranges included). Each result is checked with `podman image inspect`
#    (the diffID of the layer must be the config's).
# 4. Print a Markdown table: median and minimum wall time, bytes fetched, the full blob size,
#    and podman/stowage ratios. Raw numbers in OUT.
set -euo pipefail

RUNS=${1:-${RUNS:-5}}
NICE=${NICE:--15}
FILES=${FILES:-1000}
SIZE_KIB=${SIZE_KIB:-64}
CHANGED_PCT=${CHANGED_PCT:-5}
DIR=${DIR:-/dev/shm}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/var/tmp/stowage-bench-cache/partial-$(date +%Y%m%d-%H%M%S)}
BENCH=compare-partial.sh
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"

require_root "containers-storage overlay stores keep owners"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number, got '$RUNS'"
require_tools docker-registry podman python3 curl
ensure_gnu_time
mkdir -p "$OUT"
raise_autogroup
build_stowage

WORK=$(mktemp -d "$DIR/st-part.XXXXXX")
on_exit "for r in '$WORK'/*-root; do clean_store \"\$r\" 2>/dev/null; done; rm -rf '$WORK'"

# 1. the two images
log "writing two images of $FILES files of $SIZE_KIB KiB ($CHANGED_PCT% changed)"
python3 - "$WORK/layouts" "$FILES" "$SIZE_KIB" "$CHANGED_PCT" <<'EOF'
import hashlib, io, json, os, random, sys, tarfile
out, files, kib, pct = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
changed = set(range(0, files, max(1, 100 // pct)))
for version in (1, 2):
    layout = os.path.join(out, str(version))
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    def blob(data):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(layout, "blobs", "sha256", d), "wb") as f:
            f.write(data)
        return "sha256:" + d, len(data)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        d = tarfile.TarInfo("data"); d.type = tarfile.DIRTYPE; d.mode = 0o755; d.mtime = 1700000000
        t.addfile(d)
        for i in range(files):
            seed = i + (10**6 if version == 2 and i in changed else 0)
            data = random.Random(seed).randbytes(kib * 1024)
            ti = tarfile.TarInfo(f"data/f{i:05}"); ti.size = len(data); ti.mode = 0o644; ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
    tar = buf.getvalue()
    layer, lsize = blob(tar)
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-11-01T00:00:00Z",
                         "rootfs": {"type": "layers", "diff_ids": [layer]},
                         "history": [{"created": "2026-11-01T00:00:00Z", "created_by": "bench"}]}).encode()
    cdig, csize = blob(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": lsize}]}).encode()
    mdig, msize = blob(manifest)
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": mdig, "size": msize, "annotations": {"org.opencontainers.image.ref.name": "bench"}}]},
        open(os.path.join(layout, "index.json"), "w"))
    open(os.path.join(layout, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
EOF

# 2. the registry, access log on
mkdir -p "$WORK/registry"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
cat >"$WORK/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry/storage
http:
  addr: $REG
  secret: stowage-bench
EOF
REGLOG=$WORK/registry/registry.log
docker-registry serve "$WORK/registry/config.yml" >"$REGLOG" 2>&1 &
REGISTRY_PID=$!
# shellcheck disable=SC2016
on_exit 'kill "$REGISTRY_PID" 2>/dev/null; wait "$REGISTRY_PID" 2>/dev/null'
for _ in $(seq 1 200); do
    curl --noproxy '*' -fsS -o /dev/null "http://$REG/v2/" 2>/dev/null && break
    sleep 0.05
done
curl --noproxy '*' -fsS -o /dev/null "http://$REG/v2/" || die "docker-registry does not answer on $REG"
for v in 1 2; do
    "$STOWAGE" -q --insecure-policy copy --dest-tls-verify=false --dest-compress-format zstd:chunked \
        "oci:$WORK/layouts/$v:bench" "docker://$REG/partial:$v"
done
BLOB=$(curl --noproxy '*' -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REG/v2/partial/manifests/2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["size"])')
DIFF_ID=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["rootfs"]["diff_ids"][0])' \
    "$(grep -l '"rootfs"' "$WORK"/layouts/2/blobs/sha256/* | head -1)")
log "registry $REG; v2's zstd:chunked blob is $BLOB bytes"

# registry_bytes FROM_LINE: bytes of the blob responses logged after line FROM_LINE.
registry_bytes() {
    tail -n +"$(($1 + 1))" "$REGLOG" | python3 -c '
import re, sys
total = 0
for line in sys.stdin:
    m = re.search(r"\"GET (\S+) HTTP/[0-9.]+\" (\d+) (\d+)", line)
    if m and "/blobs/" in m.group(1):
        total += int(m.group(3))
print(total)'
}

# set_cmd TOOL TAG ROOT: CMD becomes the pull of partial:TAG into the store ROOT (run root
# ROOT-run, storage.conf ROOT.conf with partial pulls on).
set_cmd() {
    local tool=$1 tag=$2 root=$3
    case $tool in
        stowage) CMD=("$STOWAGE" -q --insecure-policy copy --src-tls-verify=false "docker://$REG/partial:$tag"
            "containers-storage:[overlay@$root+$root-run]localhost/partial:$tag") ;;
        podman) CMD=(env CONTAINERS_STORAGE_CONF="$root.conf" podman --root "$root" --runroot "$root-run"
            pull -q --tls-verify=false "$REG/partial:$tag") ;;
        *) die "unknown tool $tool" ;;
    esac
}

RAW=$OUT/partial.tsv
printf 'run\ttool\twall_s\tuser_s\tsys_s\tmaxrss_kb\tbytes\n' >"$RAW"
for run in $(seq 1 "$RUNS"); do
    if [ $((run % 2)) = 1 ]; then order="stowage podman"; else order="podman stowage"; fi
    for tool in $order; do
        root=$WORK/$run-$tool-root
        printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s-run"\n[storage.options]\npull_options = {enable_partial_images = "true", use_hard_links = "false"}\n' \
            "$root" "$root" >"$root.conf"
        set_cmd "$tool" 1 "$root"
        "${CMD[@]}" >/dev/null
        sync
        from=$(wc -l <"$REGLOG")
        log "run $run/$RUNS: $tool"
        set_cmd "$tool" 2 "$root"
        timed "$OUT/time" "${CMD[@]}"
        sleep 0.2 # the registry writes its access log line after the response
        bytes=$(registry_bytes "$from")
        printf '%s\t%s\t%s\t%s\n' "$run" "$tool" "$(tail -1 "$OUT/time")" "$bytes" >>"$RAW"
        name=localhost/partial:2
        [ "$tool" = podman ] && name=$REG/partial:2
        got=$(CONTAINERS_STORAGE_CONF="$root.conf" podman --root "$root" --runroot "$root-run" image inspect \
            --format '{{index .RootFS.Layers 0}}' "$name")
        [ "$got" = "$DIFF_ID" ] || die "$tool's v2 in $root has layer $got, expected $DIFF_ID"
        clean_store "$root"
        rm -rf "$root-run" "$root.conf"
    done
done

# 4. summary
python3 - "$RAW" "$BLOB" "$FILES" "$CHANGED_PCT" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
blob = int(sys.argv[2])
print(f"\n{sys.argv[3]} files, {sys.argv[4]}% changed; v2's blob {blob} bytes\n")
print("| tool | median wall (s) | min wall (s) | bytes fetched (median) | % of the blob |")
print("|---|---|---|---|---|")
med = {}
for tool in ("stowage", "podman"):
    r = [x for x in rows if x["tool"] == tool]
    w = [float(x["wall_s"]) for x in r]
    b = statistics.median(int(x["bytes"]) for x in r)
    med[tool] = (statistics.median(w), b)
    print(f"| {tool} | {statistics.median(w):.3f} | {min(w):.3f} | {int(b)} | {100 * b / blob:.1f} |")
print(f"\npodman/stowage: wall {med['podman'][0] / med['stowage'][0]:.2f}x, bytes {med['podman'][1] / max(1, med['stowage'][1]):.2f}x")
EOF
log "raw results in $RAW"
