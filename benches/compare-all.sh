#!/bin/bash
# compare-all.sh — every comparison of benches/ in one run, summed up in one Markdown table.
#
# Usage: benches/compare-all.sh [RUNS]
#   RUNS        alternating runs per tool and case in each comparison (default 3; env RUNS too)
# Environment:
#   CACHE       shared with the comparisons (default /var/tmp/stowage-bench-cache)
#   OUT         where everything goes (default CACHE/all-DATE): OUT/NAME/ holds each
#               comparison's raw files, OUT/NAME.md its own tables, OUT/summary.md the table
#   ONLY        which comparisons (default "cstorage registry export ostree partial"):
#                 cstorage — oci: → containers-storage, stowage vs skopeo vs the shell floor,
#                            and `image cmd list` vs `podman images` (compare-cstorage.sh)
#                 registry — docker:// → containers-storage, stowage vs skopeo vs podman pull
#                            (compare-registry.sh)
#                 export   — containers-storage → oci:, stowage vs skopeo (compare-export.sh)
#                 ostree   — imports vs `ostree commit --tree=tar=` and (with the
#                            ostree-ext CLI built) vs ostree-rs-ext's pull of an encapsulated
#                            image, export vs skopeo (compare-ostree.sh)
#                 partial  — zstd:chunked partial pull of v2 over v1 from a docker-registry,
#                            stowage vs podman with partial pulls on (compare-partial.sh)
#   FILESYSTEMS as for the comparisons (default "tmpfs=/dev/shm"; add disk=/var/tmp for disk)
#   LIST_IMAGES images in the store of the list comparison (default 20)
#   LARGE_MIB   the registry comparison's one-layer memory test sizes (default "64"; "" skips)
#   IMAGES, MIB the export comparison's images (default "usr text", 256)
#   STOWAGE, FIXTURES, NICE, SETTLE as for the comparisons
#
# Not run in CI: needs root; each comparison needs its peers (skopeo, podman, umoci,
# hyperfine, docker-registry, ostree, pigz, zstd). A comparison whose peer is missing is
# skipped with a line saying which tool, and the summary says so too; one that fails is
# reported and the others still run.
#
# 1. Build release stowage and stowage-fixtures once (unless STOWAGE / FIXTURES are set) and
#    hand both to every comparison, with the same CACHE (the OS image is built once).
# 2. Run each comparison of ONLY in turn with RUNS runs. Inside each, the tools alternate run
#    by run (each goes first in turn), every run is timed by /usr/bin/time (wall, user+sys,
#    peak RSS) at niceness NICE, and every result is checked against the peer (podman sees the
#    image, IDs match, layers decode).
# 3. Read every comparison's raw TSV and print one table: per comparison, filesystem, layers
#    and tool the medians of wall time and CPU, the peak RSS, and the TOOL/stowage ratios
#    (of medians, the median of per-run ratios, of CPU); the list comparison in milliseconds.
#    A header gives the date, the machine, the load and the stowage commit. The table is
#    OUT/summary.md and goes to stdout.
set -euo pipefail

RUNS=${1:-${RUNS:-3}}
NICE=${NICE:--15}
CACHE=${CACHE:-/var/tmp/stowage-bench-cache}
ONLY=${ONLY:-"cstorage registry export ostree partial"}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$CACHE/all-$(date +%Y%m%d-%H%M%S)}
BENCH=compare-all.sh
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"

require_root "every comparison writes containers-storage or ostree stores"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number, got '$RUNS'"
require_tools python3
ensure_gnu_time
mkdir -p "$CACHE" "$OUT"

# 1. one build for all
build_stowage
build_fixtures
export STOWAGE FIXTURES CACHE NICE
export FILESYSTEMS=${FILESYSTEMS:-"tmpfs=/dev/shm"}
export LIST_IMAGES=${LIST_IMAGES:-20}
export LARGE_MIB=${LARGE_MIB-64}

# peers NAME: the tools comparison NAME needs besides stowage.
peers() {
    case $1 in
        cstorage) echo "skopeo podman umoci hyperfine pigz zstd" ;;
        registry) echo "docker-registry skopeo podman" ;;
        export) echo "skopeo podman gzip zstd" ;;
        ostree) echo "ostree skopeo podman" ;;
        partial) echo "docker-registry podman python3 curl" ;;
        *) die "unknown comparison '$1' in ONLY (cstorage registry export ostree partial)" ;;
    esac
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
status=$OUT/status.tsv
: >"$status"

# 2. each comparison
for name in $ONLY; do
    missing=()
    for tool in $(peers "$name"); do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "skipping $name: ${missing[*]} not installed"
        printf '%s\tskipped: %s not installed\n' "$name" "${missing[*]}" >>"$status"
        continue
    fi
    log "running compare-$name.sh $RUNS"
    if OUT=$OUT/$name "$REPO/benches/compare-$name.sh" "$RUNS" >"$OUT/$name.md" 2>"$OUT/$name.log"; then
        printf '%s\tok\n' "$name" >>"$status"
    else
        log "compare-$name.sh failed (last lines of $OUT/$name.log):"
        tail -5 "$OUT/$name.log" >&2
        printf '%s\tfailed (see %s)\n' "$name" "$OUT/$name.log" >>"$status"
    fi
done

# 3. the table
commit=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
python3 - "$OUT" "$RUNS" "$started" "$(nproc) × $cpu, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)" \
    "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" "$commit" <<'EOF' | tee "$OUT/summary.md"
import csv, os, statistics as st, sys
out, runs, started, machine, load0, load1, commit = sys.argv[1:]
read = lambda p: list(csv.DictReader(open(p), delimiter="\t")) if os.path.exists(p) else []
wall = lambda r: float(r["wall_s"])
cpu = lambda r: float(r["user_s"]) + float(r["sys_s"])
rss = lambda r: int(r["maxrss_kb"]) / 1024

print(f"# stowage vs its peers ({started})\n")
print(f"Machine: {machine}. Load average (1/5/15 min) {load0} before, {load1} after. "
      f"stowage at `{commit}` (release). {runs} alternating runs per case; medians.\n")
print("Ratios are TOOL/stowage (above 1: stowage is faster): of the median wall times, the")
print("median of the per-run ratios (the tools ran back to back), and of the median CPU times.\n")
print("| comparison | fs | layers | tool | runs | median wall s | median CPU s | peak RSS MiB | wall ratio | paired | CPU ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
titles = {"cstorage": ("oci: → containers-storage", "copy.tsv"),
          "registry": ("docker:// → containers-storage", "pull.tsv"),
          "export": ("containers-storage → oci:", "export.tsv"),
          "ostree": ("ostree import / export", "copy.tsv"),
          "partial": ("zstd:chunked partial pull, v2 over v1", "partial.tsv")}
status = dict(l.rstrip("\n").split("\t", 1) for l in open(f"{out}/status.tsv") if l.strip())
for name, (title, raw) in titles.items():
    if name not in status:
        continue
    rows = read(f"{out}/{name}/{raw}")
    if not rows:
        print(f"| {title} | | | *{status[name]}* | | | | | | | |")
        continue
    cases = {}
    for r in rows:
        # partial.tsv has neither column: one case, on DIR (tmpfs by default).
        key = (r.get("fs", "tmpfs"), r.get("compression", "zstd:chunked"))
        cases.setdefault(key, {}).setdefault(r["tool"], {})[r["run"]] = r
    for (fs, c), tools in cases.items():
        s = tools.get("stowage")
        for tool, rs in tools.items():
            v = list(rs.values())
            line = (f"| {title} | {fs} | {c} | {tool} | {len(v)} | {st.median(map(wall, v)):.2f} "
                    f"| {st.median(map(cpu, v)):.2f} | {max(map(rss, v)):.0f} |")
            if tool != "stowage" and s:
                paired = [wall(rs[k]) / wall(s[k]) for k in rs if k in s]
                line += (f" {st.median(map(wall, v)) / st.median(map(wall, s.values())):.2f}× "
                         f"| {st.median(paired):.2f}× "
                         f"| {st.median(map(cpu, v)) / st.median(map(cpu, s.values())):.2f}× |")
            else:
                line += " | | |"
            print(line)
    if name == "registry":
        large = read(f"{out}/registry/large.tsv")
        groups = {}
        for r in large:
            groups.setdefault((r["mib"], r["compression"]), {}).setdefault(r["tool"], []).append(r)
        for (mib, c), tools in groups.items():
            s = tools.get("stowage")
            for tool, v in tools.items():
                line = (f"| registry, one {mib} MiB layer | tmpfs | {c} | {tool} | {len(v)} "
                        f"| {st.median(map(wall, v)):.2f} | {st.median(map(cpu, v)):.2f} "
                        f"| {max(map(rss, v)):.0f} |")
                if tool != "stowage" and s:
                    line += (f" {st.median(map(wall, v)) / st.median(map(wall, s)):.2f}× | "
                             f"| {st.median(map(cpu, v)) / st.median(map(cpu, s)):.2f}× |")
                else:
                    line += " | | |"
                print(line)
    if name == "partial":
        by = {}
        for r in rows:
            by.setdefault(r["tool"], []).append(int(r["bytes"]))
        for tool, b in by.items():
            print(f"| partial pull, bytes fetched | tmpfs | zstd:chunked | {tool} | {len(b)} "
                  f"| {st.median(b):,.0f} B | | | | | |")
    if name == "cstorage":
        lrows = read(f"{out}/cstorage/list.tsv")
        n = os.environ.get("LIST_IMAGES", "20")
        by = {(r["fs"], r["tool"]): r for r in lrows}
        for r in lrows:
            ratio = ""
            if r["tool"] != "stowage" and (r["fs"], "stowage") in by:
                ratio = f"{float(r['median_s']) / float(by[(r['fs'], 'stowage')]['median_s']):.1f}×"
            print(f"| image list, {n} images (ms) | {r['fs']} | | {r['tool']} | hyperfine "
                  f"| {float(r['median_s']) * 1000:.1f} ms | | {int(r['maxrss_kb']) / 1024:.0f} "
                  f"| {ratio} | | |")
skipped = [(n, s) for n, s in status.items() if s != "ok"]
if skipped:
    print()
    for n, s in skipped:
        print(f"- {n}: {s}")
print(f"\nEach comparison's own tables: {out}/NAME.md; raw numbers: {out}/NAME/.")
EOF
