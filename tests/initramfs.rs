//! Early boot for real: the static stowage pulls an image into containers-storage from inside
//! an initramfs booted under QEMU, and podman on the host reads the result.
//!
//! 1. Build the shipped binary (`musl::dist_binary`) and find a kernel: the newest
//!    `/boot/vmlinuz-VERSION` that has `/lib/modules/VERSION/modules.dep`.
//! 2. Resolve the modules the guest needs to see its disk (`virtio_pci`, `virtio_blk`, and
//!    `ext4` when it is not built in) with their dependencies from `modules.dep`, in load
//!    order, decompressing `.ko.xz`/`.ko.zst`/`.ko.gz` on the host (busybox `insmod` takes
//!    plain ELF).
//! 3. Write the initramfs tree: `/init` (a busybox shell script), `/bin/busybox` (static),
//!    `/bin/stowage`, the modules under `/lib/modules`, and `/oci` (an OCI layout holding only
//!    the `basic` fixture, written by the same binary on the host); pack it with
//!    `cpio -o -H newc`. No `/etc`, no `/tmp`, no other program.
//! 4. Make the disk: a 128 MiB file formatted with `mkfs.ext4`, empty.
//! 5. Boot `qemu-system-x86_64 -accel tcg -nographic -no-reboot -nic none` with the kernel, the
//!    initramfs and the disk as a virtio drive. `/init` mounts proc, sysfs, devtmpfs and a
//!    tmpfs on `/run`, loads the modules, mounts the disk on `/mnt/root`, runs `stowage --insecure-policy copy
//!    oci:/oci:basic containers-storage:[overlay@/mnt/root+/run/stowage]localhost/basic:initramfs`
//!    and `stowage image --storage-root /mnt/root --runroot /run/stowage cmd list`, prints a
//!    marker with its uptime, unmounts and powers off. The run is bounded by [`BOOT_TIMEOUT`]:
//!    a hang fails the test instead of hanging CI.
//! 6. On the host, loop-mount the disk and check the store with `podman --root … images` and
//!    `podman image inspect` against the fixture (image ID, manifest digest, diffIDs); print
//!    the boot-to-done time.
//!
//! Skipped with a `SKIP:` line (failed in CI, whose `.ci/run` installs them) when root,
//! qemu-system-x86_64, a kernel, busybox, cpio, mkfs.ext4 or podman is missing.

mod common;
mod musl;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The longest a boot may take before it counts as hung (software emulation on a loaded
/// machine boots in well under a minute; this only turns a hang into a failure).
const BOOT_TIMEOUT: Duration = Duration::from_secs(150);

/// Printed by `/init` when every command succeeded.
const DONE: &str = "STOWAGE-INITRAMFS-DONE";
/// Printed by `/init` when a command failed.
const FAILED: &str = "STOWAGE-INITRAMFS-FAILED";

/// The image name the guest writes.
const NAME: &str = "localhost/basic:initramfs";

/// `/init`: everything the guest does, in busybox sh. Its modules are listed, in load order,
/// in `/lib/modules/order`.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /run /mnt/root
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 run /run
fail() { echo "STOWAGE-INITRAMFS-FAILED: $*"; poweroff -f; }
echo "stowage-initramfs: init started at $(cut -d' ' -f1 /proc/uptime) s"
for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m" || fail "insmod $m"; done
i=0
while [ ! -b /dev/vda ]; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "no /dev/vda"; sleep 0.1
done
mount -t ext4 /dev/vda /mnt/root || fail "mount /dev/vda"
start=$(cut -d' ' -f1 /proc/uptime)
stowage --quiet --insecure-policy copy oci:/oci:basic 'containers-storage:[overlay@/mnt/root+/run/stowage]localhost/basic:initramfs' || fail "stowage copy"
copied=$(cut -d' ' -f1 /proc/uptime)
stowage image --storage-root /mnt/root --runroot /run/stowage cmd list || fail "stowage image cmd list"
umount /mnt/root || fail "umount"
echo "STOWAGE-INITRAMFS-DONE uptime=$(cut -d' ' -f1 /proc/uptime) copy-start=$start copy-end=$copied"
poweroff -f
"#;

/// The newest kernel with modules: `(vmlinuz, /lib/modules/VERSION)`.
fn find_kernel() -> Option<(PathBuf, PathBuf)> {
    let mut found: Vec<(String, PathBuf, PathBuf)> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix("vmlinuz-")?.to_string();
            let modules = Path::new("/lib/modules").join(&version);
            modules
                .join("modules.dep")
                .is_file()
                .then(|| (version, e.path(), modules))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, k, m)| (k, m))
}

/// A module's name as `modprobe` spells it: the file stem, `-` as `_`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// The files (relative to `modules`) to load for `wanted`, dependencies first; built-in
/// modules need nothing.
fn modules_to_load(modules: &Path, wanted: &[&str]) -> Vec<String> {
    let dep = std::fs::read_to_string(modules.join("modules.dep"))
        .unwrap_or_else(|e| panic!("reading {:?}: {e}", modules.join("modules.dep")));
    let builtin: BTreeSet<String> = std::fs::read_to_string(modules.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(module_name)
        .collect();
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in dep.lines() {
        let Some((file, needs)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            module_name(file),
            (
                file.to_string(),
                needs.split_whitespace().map(module_name).collect(),
            ),
        );
    }
    fn visit(
        name: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        builtin: &BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if builtin.contains(name) {
            return;
        }
        let (file, needs) = deps
            .get(name)
            .unwrap_or_else(|| panic!("module {name} is neither in modules.dep nor built in"));
        if order.contains(file) {
            return;
        }
        for n in needs {
            visit(n, deps, builtin, order);
        }
        order.push(file.clone());
    }
    let mut order = Vec::new();
    for name in wanted {
        visit(name, &deps, &builtin, &mut order);
    }
    order
}

/// Copy the module `file` of `modules` to `dir/NAME.ko`, decompressed; returns `NAME.ko`.
fn install_module(modules: &Path, file: &str, dir: &Path) -> String {
    let src = modules.join(file);
    let name = format!("{}.ko", module_name(file));
    let dst = dir.join(&name);
    if file.ends_with(".ko") {
        std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copying {src:?}: {e}"));
    } else if file.ends_with(".ko.gz") {
        let mut decoder = flate2::read::GzDecoder::new(std::fs::File::open(&src).unwrap());
        let mut out = std::fs::File::create(&dst).unwrap();
        std::io::copy(&mut decoder, &mut out).unwrap_or_else(|e| panic!("gunzip {src:?}: {e}"));
    } else {
        let tool = if file.ends_with(".ko.xz") {
            "xz"
        } else if file.ends_with(".ko.zst") {
            "zstd"
        } else {
            panic!("module {src:?}: unknown compression");
        };
        let out = run(Command::new(tool).arg("-dc").arg(&src));
        std::fs::write(&dst, out.stdout).unwrap();
    }
    name
}

fn write_executable(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Unmounts `path` (lazily) when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

#[test]
fn stowage_pulls_into_containers_storage_inside_an_initramfs_under_qemu() {
    let test = "stowage_pulls_into_containers_storage_inside_an_initramfs_under_qemu";
    if !is_root() {
        skip(
            test,
            "the kernel image, loop mounts and the store's owners need root",
        );
        return;
    }
    for tool in ["qemu-system-x86_64", "cpio", "mkfs.ext4", "podman"] {
        if !oracle(tool, test) {
            return;
        }
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    let Some(busybox) = busybox else {
        skip(
            test,
            "busybox is not installed (apt-get install busybox-static)",
        );
        return;
    };
    let Some((kernel, modules)) = find_kernel() else {
        skip(
            test,
            "no /boot/vmlinuz-VERSION with /lib/modules/VERSION (apt-get install linux-image-cloud-amd64)",
        );
        return;
    };
    let Some(binary) = musl::dist_binary(test) else {
        return;
    };
    let basic = fixture("basic");
    let work = tempdir();

    // 2.-3. The initramfs tree.
    let tree = work.path().join("initramfs");
    for dir in [
        "bin",
        "lib/modules",
        "proc",
        "sys",
        "dev",
        "run",
        "mnt/root",
    ] {
        std::fs::create_dir_all(tree.join(dir)).unwrap();
    }
    write_executable(&tree.join("init"), INIT.as_bytes());
    std::fs::copy(&busybox, tree.join("bin/busybox")).unwrap();
    std::fs::copy(&binary, tree.join("bin/stowage")).unwrap();
    let order: Vec<String> = modules_to_load(&modules, &["virtio_pci", "virtio_blk", "ext4"])
        .iter()
        .map(|file| install_module(&modules, file, &tree.join("lib/modules")))
        .collect();
    std::fs::write(tree.join("lib/modules/order"), order.join("\n") + "\n").unwrap();
    run(Command::new(&binary).args([
        "--quiet",
        "--insecure-policy",
        "copy",
        &basic.oci_ref(),
        &format!("oci:{}:basic", tree.join("oci").display()),
    ]));
    let initrd = work.path().join("initramfs.cpio");
    run(Command::new("sh")
        .arg("-ec")
        .arg(r#"cd "$1" && find . | cpio --quiet -o -H newc -R 0:0 > "$2""#)
        .arg("sh")
        .arg(&tree)
        .arg(&initrd));
    let initrd_size = std::fs::metadata(&initrd).unwrap().len();

    // 4. The disk.
    let disk = work.path().join("disk.ext4");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    run(Command::new("mkfs.ext4").arg("-q").arg("-F").arg(&disk));

    // 5. Boot, bounded.
    let log_path = work.path().join("console.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "512", "-smp", "1"])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting qemu-system-x86_64");
    let status = loop {
        if let Some(status) = qemu.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BOOT_TIMEOUT {
            let _ = qemu.kill();
            let _ = qemu.wait();
            panic!(
                "the guest did not power off within {BOOT_TIMEOUT:?}; console:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let elapsed = started.elapsed();
    let console = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).into_owned();
    assert!(
        status.success(),
        "qemu exited with {status}; console:\n{console}"
    );
    assert!(
        !console.contains(FAILED) && console.contains(DONE),
        "/init did not finish; console:\n{console}"
    );
    let done_line = console.lines().find(|l| l.contains(DONE)).unwrap();
    let init_line = console
        .lines()
        .find_map(|l| l.find("stowage-initramfs: init started").map(|at| &l[at..]))
        .unwrap_or("");
    eprintln!(
        "{test}: kernel {}, initramfs {initrd_size} bytes (stowage {} bytes), modules {order:?}",
        kernel.display(),
        std::fs::metadata(&binary).unwrap().len()
    );
    eprintln!(
        "{test}: boot to done {:.1} s on the host (qemu start to exit, software emulation); guest: {}; {}",
        elapsed.as_secs_f64(),
        init_line.trim(),
        done_line.trim()
    );
    // The guest's `image cmd list` table names the image.
    assert!(
        console
            .lines()
            .any(|l| l.starts_with("localhost/basic") && l.contains("initramfs")),
        "the guest's image cmd list shows no {NAME}; console:\n{console}"
    );

    // 6. The host reads the disk's store with podman.
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(Command::new("mount")
        .args(["-t", "ext4", "-o", "loop"])
        .arg(&disk)
        .arg(&mnt));
    let _mounted = Mounted(mnt.clone());
    let _overlay = Mounted(mnt.join("overlay"));
    let runroot = tempdir();
    let podman = |args: &[&str]| -> Value {
        let out = run(Command::new("podman")
            .arg("--root")
            .arg(&mnt)
            .arg("--runroot")
            .arg(runroot.path())
            .args(["--storage-driver", "overlay"])
            .args(args));
        serde_json::from_slice(&out.stdout).expect("podman prints JSON")
    };
    let images = podman(&["images", "--format", "json"]);
    let images = images.as_array().expect("podman images prints an array");
    assert_eq!(images.len(), 1, "one image on the disk: {images:?}");
    let config_id = basic.config_digest.to_string();
    let config_id = config_id.trim_start_matches("sha256:");
    assert_eq!(images[0]["Id"], config_id);
    let inspect = podman(&["image", "inspect", NAME]);
    let inspect = &inspect[0];
    assert_eq!(inspect["Id"], config_id);
    assert_eq!(inspect["Digest"], basic.manifest_digest.to_string());
    let diff_ids: Vec<String> = basic.diff_ids().iter().map(|d| d.to_string()).collect();
    assert_eq!(inspect["RootFS"]["Layers"], serde_json::json!(diff_ids));
}

#[test]
fn module_names_are_spelled_as_modprobe_does() {
    // The resolver above keys modules.dep by these names; a wrong spelling would make it
    // miss a dependency rather than fail.
    assert_eq!(
        module_name("kernel/drivers/block/virtio_blk.ko"),
        "virtio_blk"
    );
    assert_eq!(
        module_name("kernel/drivers/virtio/virtio_pci.ko.xz"),
        "virtio_pci"
    );
    assert_eq!(
        module_name("kernel/arch/x86/crypto/crc32c-intel.ko.zst"),
        "crc32c_intel"
    );
}
