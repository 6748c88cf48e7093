//! SELinux labels of `stowage copy … ostree:` against libostree's own labelling (`ostree
//! commit --selinux-policy`, libselinux 3.4 underneath), for a plain image whose tree carries
//! its policy: the merged commit stowage writes has the `ContentChecksum` of `ostree commit
//! --tree=tar=LAYER --selinux-policy=ROOT` of the same layer — so every file and directory
//! got the same `security.selinux` (or none, for `<<none>>`), with the precedence rules
//! (last match wins, exact paths after regexes, file types, substitutions) as libselinux's.
//! (Encapsulated images with a policy are checked against ostree-rs-ext itself in
//! `tests/ostree_encapsulated.rs`.)

mod common;

use common::{cmd, content_checksum, oracle, ostree, run, stowage, tempdir};
use stowage_engine::oci_layout::OciDir;
use stowage_fixtures::builder::ImageBuilder;
use stowage_fixtures::layer::{LayerCompression, LayerSpec};

const FILE_CONTEXTS: &str = "\
# comments and blank lines are skipped

/.*\tsystem_u:object_r:default_t:s0
/usr/bin/tool\t--\tsystem_u:object_r:tool_exec_t:s0
/usr(/.*)?\tsystem_u:object_r:usr_t:s0
/usr/bin(/.*)?\tsystem_u:object_r:bin_t:s0
/usr/bin/.*\\.sh\t--\tsystem_u:object_r:script_t:s0
/usr/lib/link\t-l\tsystem_u:object_r:link_t:s0
/usr/lib/modules/[0-9]+(/.*)?\tsystem_u:object_r:modules_t:s0
/usr/share/unlabeled(/.*)?\t<<none>>
/usr/lib/alias(/.*)?\tsystem_u:object_r:alias_t:s0
/usr/etc(/.*)?\tsystem_u:object_r:etc_t:s0
/usr/etc/shadow\t--\tsystem_u:object_r:shadow_t:s0
";

#[test]
fn imports_label_files_as_ostree_commit_with_the_images_policy() {
    let test = "imports_label_files_as_ostree_commit_with_the_images_policy";
    if !oracle("ostree", test) {
        return;
    }
    let dir = tempdir();
    let mut layer = LayerSpec::new("files and their policy");
    let se = "usr/etc/selinux";
    layer.file(
        &format!("{se}/config"),
        "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
    );
    layer.file(
        &format!("{se}/targeted/policy/policy.33"),
        "not a real policy\n",
    );
    layer.file(
        &format!("{se}/targeted/contexts/files/file_contexts"),
        FILE_CONTEXTS,
    );
    layer.file(
        &format!("{se}/targeted/contexts/files/file_contexts.subs_dist"),
        "/usr/lib/alias2 /usr/lib/alias\n",
    );
    layer.file("usr/bin/tool", "#!/bin/sh\n").mode = 0o755;
    layer.file("usr/bin/run.sh", "#!/bin/sh\n").mode = 0o755;
    layer.file("usr/bin/other", "x\n");
    layer.symlink("usr/lib/link", "../bin/tool");
    layer.file("usr/lib/link2", "not a link\n");
    layer.file("usr/lib/modules/6/kernel.ko", "ko\n");
    layer.file("usr/lib/modules/x/kernel.ko", "ko\n");
    layer.file("usr/share/unlabeled/f", "no label\n");
    layer.file("usr/lib/alias2/f", "substituted\n");
    layer.file("usr/lib/alias22/f", "not substituted\n");
    layer.file("usr/etc/shadow", "root:*::\n").mode = 0o600;
    layer.file("usr/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    let tar = layer.to_tar().unwrap();
    let tar_path = dir.path().join("layer.tar");
    std::fs::write(&tar_path, &tar).unwrap();

    // libostree labels the same tar with the policy of a checkout of it.
    let policy_root = dir.path().join("root");
    for e in tar::Archive::new(&tar[..]).entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let p = policy_root.join(e.path().unwrap());
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            std::fs::write(p, data).unwrap();
        }
    }
    let theirs = dir.path().join("theirs");
    run(cmd(
        "ostree",
        [
            "init",
            &format!("--repo={}", theirs.display()),
            "--mode=bare",
        ],
    ));
    ostree(
        &theirs,
        &[
            "commit",
            "-b",
            "layer",
            "--tar-autocreate-parents",
            "--no-bindings",
            &format!("--selinux-policy={}", policy_root.display()),
            &format!("--tree=tar={}", tar_path.display()),
        ],
    );

    let layout = dir.path().join("oci");
    ImageBuilder::new()
        .layer(&layer, LayerCompression::Gzip)
        .build()
        .unwrap()
        .write(&OciDir::create(&layout).unwrap(), Some("1"))
        .unwrap();
    let ours = dir.path().join("ours");
    run(cmd(
        "ostree",
        ["init", &format!("--repo={}", ours.display()), "--mode=bare"],
    ));
    let mut c = stowage();
    c.args([
        "copy",
        &format!("oci:{}:1", layout.display()),
        &format!("ostree:[{}]localhost/labelled:1", ours.display()),
    ]);
    run(c);
    let image = "ostree/container/image/docker_3A__2F__2F_localhost/labelled_3A_1";
    let (a, b) = (
        content_checksum(&ours, image),
        content_checksum(&theirs, "layer"),
    );
    if a != b {
        let la = ostree(&ours, &["ls", "-R", "-X", image]);
        let lb = ostree(&theirs, &["ls", "-R", "-X", "layer"]);
        panic!("labels differ from libostree's:\nstowage:\n{la}\nostree commit:\n{lb}");
    }
    let listing = ostree(&ours, &["ls", "-R", "-X", image]);
    for (path, label) in [
        ("/usr/bin/tool", "tool_exec_t"),
        ("/usr/bin/run.sh", "script_t"),
        ("/usr/lib/link ", "link_t"),
        ("/usr/lib/link2", "usr_t"),
        ("/usr/lib/modules/6/kernel.ko", "modules_t"),
        ("/usr/lib/alias2/f", "alias_t"),
        ("/usr/etc/shadow", "shadow_t"),
    ] {
        let line = listing
            .lines()
            .find(|l| {
                l.contains(path.trim_end()) && (l.ends_with(path.trim_end()) || l.contains(path))
            })
            .unwrap_or_else(|| panic!("{path} not listed:\n{listing}"));
        assert!(line.contains(label), "{path} should be {label}: {line}");
    }
    let unlabeled = listing
        .lines()
        .find(|l| l.ends_with("/usr/share/unlabeled/f"))
        .unwrap();
    assert!(
        !unlabeled.contains("security.selinux"),
        "<<none>>: {unlabeled}"
    );
}
