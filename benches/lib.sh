# shellcheck shell=bash
# lib.sh — shell functions shared by the comparison benches (compare-*.sh); source it.
#
# The callers set BENCH (their name, for messages), REPO, CACHE, NICE and OUT before using
# these. What is here:
# 1. messages and checks: die, log, require_root, require_tools, ensure_gnu_time;
# 2. cleanup: on_exit registers commands run (last first) when the script exits, also after
#    an error or Ctrl-C;
# 3. fairness on a shared machine: raise_autogroup gives the script's scheduler autogroup
#    niceness NICE (restored on exit); timed runs a command at niceness NICE under
#    /usr/bin/time;
# 4. inputs: build_stowage (release build unless STOWAGE is set), ensure_os_image (the
#    OS-sized image of fixtures/make-os-image.sh in CACHE/os);
# 5. filesystems and containers-storage roots: fs_dir (a FILESYSTEMS entry's directory, or a
#    new loop-mounted ext4 for `NAME=fresh-ext4`), settle (let ext4 forget recently deleted
#    inodes before timing on disk), clean_store;
# 6. copy_summary: medians, minima and X/stowage ratios of a copy.tsv as a Markdown table;
# 7. order RUN: the tools of TOOLS rotated so each goes first in turn;
# 8. shell_floor LAYOUT TAG DEST: the shell floor of a pull (sha256 | pigz -d | tar -x per
#    layer, two layers at a time).
# Why each of these matters is explained in docs/performance.md ("How it was measured").

die() { echo "${BENCH:-bench}: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

require_root() {
    [ "$(id -u)" = 0 ] || die "must run as root ($*)"
}

# require_tools TOOL...: each must be on PATH.
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is needed (apt-get install $tool)"
    done
}

ensure_gnu_time() {
    if [ ! -x /usr/bin/time ]; then
        log "installing GNU time"
        DEBIAN_FRONTEND=noninteractive apt-get install -y time >/dev/null || die "could not install time"
    fi
}

# on_exit CMD: run CMD (a string, eval'ed) when the script exits; the last registered runs
# first. INT and TERM exit the script, so these run then too.
_exit_hooks=()
_run_exit_hooks() {
    local i
    for ((i = ${#_exit_hooks[@]} - 1; i >= 0; i--)); do
        eval "${_exit_hooks[$i]}" || true
    done
}
on_exit() {
    if [ ${#_exit_hooks[@]} = 0 ]; then
        trap _run_exit_hooks EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
    fi
    _exit_hooks+=("$1")
}

# raise_autogroup: with sched_autogroup_enabled, `nice` only ranks processes of one session,
# so the session's autogroup gets niceness NICE too (restored on exit). NICE=0: nothing.
raise_autogroup() {
    if [ "$NICE" != 0 ] && [ -w /proc/$$/autogroup ]; then
        _old_autogroup=$(awk '{print $3}' /proc/$$/autogroup)
        echo "$NICE" >/proc/$$/autogroup
        # shellcheck disable=SC2016 # expanded when the hook runs
        on_exit 'echo "$_old_autogroup" >/proc/$$/autogroup 2>/dev/null'
    fi
}

# timed TIMEFILE CMD...: run CMD at niceness NICE under GNU time; TIMEFILE gets
# "wall<TAB>user<TAB>sys<TAB>maxrss_kb" as its last line. CMD's output goes to OUT/last.log;
# on failure it is printed and the script dies.
timed() {
    local t=$1
    shift
    nice -n "$NICE" /usr/bin/time -f '%e\t%U\t%S\t%M' -o "$t" "$@" >"$OUT/last.log" 2>&1 \
        || { cat "$OUT/last.log" >&2; die "failed: $*"; }
}

# build_stowage: set STOWAGE to a release build of the CLI unless it is already set.
build_stowage() {
    if [ -z "${STOWAGE:-}" ]; then
        log "building stowage (release)"
        (cd "$REPO" && cargo build --release --locked --bin stowage) >&2
        STOWAGE=${CARGO_TARGET_DIR:-$REPO/target}/release/stowage
    fi
    [ -x "$STOWAGE" ] || die "no stowage binary at $STOWAGE"
}

# build_fixtures: set FIXTURES to a release build of stowage-fixtures (the one test-image
# builder) unless it is already set.
build_fixtures() {
    if [ -z "${FIXTURES:-}" ]; then
        log "building stowage-fixtures (release)"
        (cd "$REPO" && cargo build --release --locked -p stowage-fixtures --bin stowage-fixtures) >&2
        FIXTURES=${CARGO_TARGET_DIR:-$REPO/target}/release/stowage-fixtures
    fi
    [ -x "$FIXTURES" ] || die "no stowage-fixtures binary at $FIXTURES"
}

# ensure_os_image: CACHE/os/{gzip,zstd} (OCI layouts, tag `os`), built once.
ensure_os_image() {
    if [ ! -f "$CACHE/os/gzip/index.json" ] || [ ! -f "$CACHE/os/zstd/index.json" ]; then
        rm -rf "$CACHE/os"
        log "building the OS image into $CACHE/os"
        "$REPO/fixtures/make-os-image.sh" "$CACHE/os"
    fi
}

# fs_dir NAME SPEC: set FS_DIR to the directory a FILESYSTEMS entry NAME=SPEC names. SPEC
# `fresh-ext4` makes a new ext4 file system, once per run and NAME: a 16 GiB sparse image in
# CACHE, loop-mounted with direct I/O (writes reach the disk, not a second page cache) under
# CACHE, unmounted and deleted on exit. A file system that has seen no deletions makes ext4's
# inode allocator skip nothing (recently_deleted(): inodes freed in the last 60 s, or 360 s
# while their inode-table block is dirty, are passed over one lookup at a time, which on a
# build machine's root file system costs both tools seconds of system time; performance.md 15).
declare -A _fresh_fs=()
fs_dir() {
    local name=$1 spec=$2 img mnt dev
    FS_DIR=$spec
    [ "$spec" = fresh-ext4 ] || return 0
    mnt=$CACHE/mnt-$name
    if [ -n "${_fresh_fs[$name]:-}" ]; then
        FS_DIR=$mnt
        return 0
    fi
    require_tools mkfs.ext4 losetup
    img=$CACHE/$name-fresh.ext4
    mkdir -p "$mnt"
    if mountpoint -q "$mnt"; then umount "$mnt"; fi
    rm -f "$img"
    truncate -s 16G "$img"
    mkfs.ext4 -q -F "$img" || die "mkfs.ext4 $img failed"
    dev=$(losetup --direct-io=on -f --show "$img") || die "losetup $img failed"
    mount "$dev" "$mnt" || { losetup -d "$dev"; die "mounting $dev on $mnt failed"; }
    on_exit "umount '$mnt'; losetup -d '$dev'; rm -f '$img'"
    _fresh_fs[$name]=1
    FS_DIR=$mnt
}

# settle FS: before timing on a non-tmpfs filesystem, sync and wait SETTLE seconds (default
# 65) without deleting anything: ext4 without a journal makes file creation slow for a
# minute after many deletions (recently_deleted() in fs/ext4/ialloc.c).
settle() {
    # (a fresh-ext4 file system has seen no deletions)
    if [ "$1" != tmpfs ] && [ -z "${_fresh_fs[$1]:-}" ] && [ "${SETTLE:-65}" != 0 ]; then
        log "$1: sync, then ${SETTLE:-65} s without deletions (ext4 recently-deleted inodes)"
        sync
        sleep "${SETTLE:-65}"
    fi
}

# clean_store ROOT: unmount what podman/skopeo mounted on ROOT/overlay, then delete ROOT.
clean_store() {
    local root=$1
    if mountpoint -q "$root/overlay" 2>/dev/null; then umount -l "$root/overlay"; fi
    rm -rf "$root"
}

# copy_summary RAW TITLE: a Markdown table of RAW (columns fs, compression, run, tool,
# wall_s, user_s, sys_s, maxrss_kb, load1), with each other tool's ratios to stowage.
copy_summary() {
    python3 - "$1" "$2" <<'EOF'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
runs = {}
for r in rows:
    runs.setdefault((r["fs"], r["compression"]), {}).setdefault(r["tool"], {})[r["run"]] = r
wall = lambda r: float(r["wall_s"])
cpu = lambda r: float(r["user_s"]) + float(r["sys_s"])
rss = lambda r: int(r["maxrss_kb"]) / 1024
print(f"## {sys.argv[2]} (seconds; CPU = user+sys; RSS = peak, MiB)\n")
print("Ratios are TOOL/stowage: of the median wall times, the median of the per-run ratios")
print("(the tools ran back to back in each run), and of the median CPU times.\n")
print("| fs | layers | tool | runs | median wall | min wall | median CPU | median RSS | max RSS | load (1 min) | wall ratio | paired ratio | CPU ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for (fs, c), tools in runs.items():
    for tool, rs in tools.items():
        v = list(rs.values())
        line = (f"| {fs} | {c} | {tool} | {len(v)} | {st.median(map(wall, v)):.2f} | {min(map(wall, v)):.2f} "
                f"| {st.median(map(cpu, v)):.2f} | {st.median(map(rss, v)):.0f} | {max(map(rss, v)):.0f} "
                f"| {min(float(r['load1']) for r in v):.1f}–{max(float(r['load1']) for r in v):.1f} |")
        if tool != "stowage" and "stowage" in tools:
            s = tools["stowage"]
            paired = [wall(rs[k]) / wall(s[k]) for k in rs if k in s]
            line += (f" {st.median(map(wall, v)) / st.median(map(wall, s.values())):.2f}x "
                     f"| {st.median(paired):.2f}x "
                     f"| {st.median(map(cpu, v)) / st.median(map(cpu, s.values())):.2f}x |")
        else:
            line += " | | |"
        print(line)
EOF
}

# order RUN: TOOLS rotated by RUN-1, so each tool goes first in turn.
order() {
    local -a t
    read -ra t <<<"$TOOLS"
    local n=${#t[@]} i
    for ((i = 0; i < n; i++)); do echo -n "${t[$(((i + $1 - 1) % n))]} "; done
}

# shell_floor LAYOUT TAG DEST: what a pull into plain directories costs with the fastest shell
# tools (the floor of issue 13): every layer blob of LAYOUT:TAG is hashed (sha256sum), decoded
# (pigz -d, or zstd -d) and unpacked (tar -x, owners and modes kept) into DEST/N, two layers
# at a time (xargs -P 2). No verification, no whiteouts, no tar-split, no store records.
# Run it as a command (`bash -c '. lib.sh; shell_floor …'`) so /usr/bin/time sees the tree.
shell_floor() {
    python3 - "$1" "$2" <<'EOF' | xargs -P 2 -n 3 bash -c '
set -euo pipefail
case $2 in
    *zstd) dec="zstd -dcq" ;;
    *gzip) dec="pigz -dc" ;;
    *) dec=cat ;;
esac
mkdir -p "$0/$3"
tee >(sha256sum >/dev/null) <"$1" | $dec | tar --numeric-owner -xpf - -C "$0/$3"
' "$3"
import json, sys
layout, tag = sys.argv[1], sys.argv[2]
blob = lambda d: f"{layout}/blobs/sha256/{d.split(':')[1]}"
index = json.load(open(f"{layout}/index.json"))
m = next(m for m in index["manifests"]
         if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
manifest = json.load(open(blob(m["digest"])))
for i, l in enumerate(manifest["layers"]):
    print(blob(l["digest"]), l["mediaType"], i)
EOF
}
