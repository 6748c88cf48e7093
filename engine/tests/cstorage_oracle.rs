//! Oracle test: the containers-storage module against podman 4.3 and skopeo 1.9 on the same
//! store.
//!
//! 1. skopeo writes a small OCI image (and a Docker-schema2 conversion of it) into a temporary
//!    overlay store; the engine lists it, reads manifest and config, and computes the same IDs.
//! 2. `podman images --format json` and `podman image inspect` must print exactly what
//!    `cstorage::catalog` returns.
//! 3. Removing the images with the engine leaves a store podman reads as empty.
//! 4. Names added by the engine are understood by `podman rmi`.
//! 5. An image written by the engine's layer/image API is listed, inspected and removed by
//!    podman.
//!
//! Skips (with a message) when podman or skopeo is missing, unless `CI=true`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use stowage_engine::compression::Compression;
use stowage_engine::cstorage::{
    catalog, ids, images, GoTime, LayerDigests, NewImage, NewLayer, Store,
};
use stowage_engine::digest::sha256_of;

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

struct Env {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    run: PathBuf,
}

impl Env {
    fn podman(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.run)
            .arg("--storage-driver")
            .arg("overlay")
            .args(args);
        cmd.output().expect("running podman")
    }

    fn podman_json(&self, args: &[&str]) -> Value {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("podman prints JSON")
    }

    fn skopeo_copy(&self, extra: &[&str], src: &str, name: &str) {
        let dest = format!(
            "containers-storage:[overlay@{}+{}]{name}",
            self.root.display(),
            self.run.display()
        );
        let out = Command::new("skopeo")
            .arg("copy")
            .arg("--quiet")
            .args(extra)
            .arg(src)
            .arg(&dest)
            .output()
            .expect("running skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {src} {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // podman may have made R/overlay a private mount point.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.root.join("overlay"))
            .output();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, name, &[][..]).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A two-layer OCI layout at `dir` with tags `t1` and `t0` (t1's parent image); returns t1's
/// (manifest digest, config digest, diffIDs).
fn make_oci_layout(dir: &Path) -> (String, String, Vec<String>) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| {
        let d = sha256_of(b);
        std::fs::write(blobs.join(d.digest()), b).unwrap();
        d.to_string()
    };
    let l1 = tar_of(&[("etc/", b""), ("etc/hello.txt", b"hello world\n")]);
    let l2 = tar_of(&[("etc/", b""), ("etc/b", b"b\n")]);
    let mut layers = vec![];
    let mut diff_ids = vec![];
    for l in [&l1, &l2] {
        diff_ids.push(sha256_of(l).to_string());
        let gz = gzip(l);
        layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(&gz), "size": gz.len()}));
    }
    let history = json!([{"created": "2023-11-14T22:13:20Z", "created_by": "l1", "comment": "first"},
                         {"created": "2023-11-14T22:13:20.5Z", "created_by": "l2"},
                         {"created": "2023-11-14T22:13:20.5Z", "created_by": "env", "empty_layer": true}]);
    // t1: the image; t0: its parent in podman's sense (same layers, one history entry less).
    let mut index = vec![];
    let mut t1 = (String::new(), String::new());
    for (tag, entries, label) in [("t1", 3, "b"), ("t0", 2, "base")] {
        let config = json!({
            "created": "2023-11-14T22:13:20.5Z", "author": "oracle", "architecture": "amd64", "os": "linux",
            "config": {"User": "1000", "ExposedPorts": {"80/tcp": {}}, "Env": ["PATH=/bin"], "Cmd": ["/bin/sh"],
                       "WorkingDir": "/", "Labels": {"a": label}, "Hostname": "dropped-by-podman"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history.as_array().unwrap()[..entries],
        });
        let cb = serde_json::to_vec(&config).unwrap();
        let cd = put(&cb);
        let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cb.len()},
            "layers": layers, "annotations": {"org.example": tag}});
        let mb = serde_json::to_vec(&manifest).unwrap();
        let md = put(&mb);
        index.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mb.len(), "annotations": {"org.opencontainers.image.ref.name": tag}}));
        if tag == "t1" {
            t1 = (md, cd);
        }
    }
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": index})).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    (t1.0, t1.1, diff_ids)
}

/// Sort a `podman images` JSON array so row order (unstable in podman for equal times)
/// does not matter.
fn sorted(v: Value) -> Vec<Value> {
    let mut rows = v.as_array().expect("array").clone();
    rows.sort_by_key(|r| r.to_string());
    rows
}

fn compare_with_podman(env: &Env, store: &Store) {
    let ours = serde_json::to_value(catalog::list_images(store, false).unwrap()).unwrap();
    let theirs = env.podman_json(&["images", "--format", "json"]);
    assert_eq!(sorted(ours), sorted(theirs), "podman images --format json");
    let ours_all = serde_json::to_value(catalog::list_images(store, true).unwrap()).unwrap();
    let theirs_all = env.podman_json(&["images", "--all", "--format", "json"]);
    assert_eq!(
        sorted(ours_all),
        sorted(theirs_all),
        "podman images --all --format json"
    );
    for img in store.images().unwrap() {
        let ours = serde_json::to_value(catalog::inspect_image(store, &img.id).unwrap()).unwrap();
        let theirs = env.podman_json(&["image", "inspect", &img.id]);
        assert_eq!(ours, theirs[0], "podman image inspect {}", img.id);
        // Key order too.
        let ok: Vec<&String> = ours.as_object().unwrap().keys().collect();
        let tk: Vec<&String> = theirs[0].as_object().unwrap().keys().collect();
        assert_eq!(ok, tk);
    }
}

fn assert_store_empty(env: &Env) {
    assert_eq!(
        env.podman_json(&["images", "--all", "--format", "json"]),
        json!([])
    );
    let layers = std::fs::read_to_string(env.root.join("overlay-layers/layers.json")).unwrap();
    assert_eq!(layers.trim(), "[]");
    let images = std::fs::read_to_string(env.root.join("overlay-images/images.json")).unwrap();
    assert_eq!(images.trim(), "[]");
    assert_eq!(
        std::fs::read_dir(env.root.join("overlay/l"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn podman_and_skopeo_agree_with_the_store() {
    if !have("podman") || !have("skopeo") {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("podman and skopeo are required for the containers-storage oracle test in CI");
        }
        eprintln!("skipping containers-storage oracle test: podman or skopeo not installed");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("stowage-cs-oracle")
        .tempdir()
        .unwrap();
    let base = tmp.path().to_path_buf();
    let env = Env {
        root: base.join("root"),
        run: base.join("run"),
        base,
        _tmp: tmp,
    };
    let oci = env.base.join("oci");
    let (md, cd, diff_ids) = make_oci_layout(&oci);
    let src = format!("oci:{}:t1", oci.display());

    // 1. skopeo writes; the engine reads and computes the same IDs.
    env.skopeo_copy(&[], &src, "localhost/oracle:1");
    env.skopeo_copy(&["--format", "v2s2"], &src, "localhost/oracle-docker:1");
    let base_src = format!("oci:{}:t0", oci.display());
    env.skopeo_copy(&[], &base_src, "localhost/oracle-base:1");
    {
        let store = Store::open_read_only(&env.root, None).unwrap();
        let img = store.image("localhost/oracle:1").unwrap();
        assert_eq!(format!("sha256:{}", img.id), cd);
        assert_eq!(img.digest, md);
        let by_digest = store
            .image_manifest_bytes_by_digest(&img, &md.parse().unwrap())
            .unwrap();
        assert_eq!(sha256_of(&by_digest).to_string(), md);
        // Without a digest the last stored manifest (`manifest` key) is the one read: here the
        // schema2 conversion, which skopeo stored second under the same image ID.
        let manifest = store.image_manifest(&img).unwrap();
        assert_eq!(
            manifest.media_type,
            stowage_engine::manifest::DOCKER_MANIFEST
        );
        assert_eq!(img.digests().len(), 2);
        let config = store.image_config(&img).unwrap();
        assert_eq!(sha256_of(&config.bytes).to_string(), cd);
        let diffs: Vec<String> = config
            .diff_ids()
            .unwrap()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(diffs, diff_ids);
        let expected_ids = ids::layer_ids(&config.diff_ids().unwrap());
        let chain: Vec<String> = store
            .image_layers(&img)
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(chain, expected_ids);
        assert_eq!(
            store.layer_lowers(&chain[1]).unwrap(),
            vec![chain[0].clone()]
        );
        assert_eq!(
            store
                .layer_diff_dir(&chain[0])
                .unwrap()
                .read("etc/hello.txt")
                .unwrap(),
            b"hello world\n"
        );
        assert!(store.open_tar_split(&chain[1]).unwrap().is_some());
        let docker = store.image("localhost/oracle-docker:1").unwrap();
        assert_eq!(
            docker.layer, img.layer,
            "the docker conversion shares the layers"
        );
        let base = store.image("localhost/oracle-base:1").unwrap();
        let listed = catalog::list_images(&store, false).unwrap();
        let child = listed.iter().find(|s| s.id == img.id).unwrap();
        assert_eq!(child.parent_id, base.id, "t0 is t1's parent");
        compare_with_podman(&env, &store);
    }
    // Untagged with a child: an intermediate image, hidden without --all.
    assert!(env
        .podman(&["untag", "localhost/oracle-base:1"])
        .status
        .success());
    compare_with_podman(&env, &Store::open_read_only(&env.root, None).unwrap());
    // podman's own tag, seen by the engine.
    assert!(env
        .podman(&["tag", "localhost/oracle:1", "quay.io/example/oracle:2"])
        .status
        .success());
    {
        let store = Store::open(&env.root, Some(&env.run), None).unwrap();
        compare_with_podman(&env, &store);

        // 3. The engine removes everything; podman sees an empty store.
        let r = catalog::remove_image(&store, "localhost/oracle:1", false).unwrap();
        assert_eq!(r.untagged, ["localhost/oracle:1"]);
        assert!(r.deleted.is_empty());
        compare_with_podman(&env, &store);
        let r = catalog::remove_image(&store, "localhost/oracle-docker:1", false).unwrap();
        assert_eq!(r.untagged, ["localhost/oracle-docker:1"]);
        let id = store.image("quay.io/example/oracle:2").unwrap().id;
        let r = catalog::remove_image(&store, &id, false).unwrap();
        assert_eq!(
            r.deleted.len(),
            2,
            "the parent left dangling goes too: {r:?}"
        );
        assert_eq!(r.deleted[0], id);
        assert_eq!(r.untagged, ["quay.io/example/oracle:2"]);
        assert_store_empty(&env);
    }

    // 4. Names added by the engine are understood by podman rmi.
    env.skopeo_copy(&[], &src, "localhost/oracle:1");
    {
        let store = Store::open(&env.root, Some(&env.run), None).unwrap();
        catalog::tag(
            &store,
            "localhost/oracle:1",
            &["localhost/oracle:extra".into()],
        )
        .unwrap();
        compare_with_podman(&env, &store);
    }
    let out = env.podman(&["rmi", "localhost/oracle:extra"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Untagged: localhost/oracle:extra"));
    let out = env.podman(&["rmi", "localhost/oracle:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_store_empty(&env);

    // 5. An image written through the engine's layer and image API.
    {
        let store = Store::open(&env.root, Some(&env.run), None).unwrap();
        let diff = sha256_of(b"engine layer tar");
        let layer_id = ids::layer_id(None, &diff);
        let h = store
            .begin_layer(&NewLayer {
                id: layer_id.clone(),
                parent: None,
                names: vec![],
            })
            .unwrap();
        h.diff_dir().write("hello", b"from stowage\n").unwrap();
        // The real tar-split writer lives in another module; podman does not read it here.
        h.create_tar_split().unwrap().write_all(&gzip(b"")).unwrap();
        store
            .finish_layer(
                h,
                &LayerDigests {
                    compressed_digest: Some(diff.clone()),
                    compressed_size: Some(2048),
                    diff_digest: diff.clone(),
                    diff_size: 2048,
                    compression: Compression::Uncompressed,
                    uid_set: BTreeSet::from([0]),
                    gid_set: BTreeSet::from([0]),
                },
            )
            .unwrap();
        let config = serde_json::to_vec(&json!({
            "created": "2024-01-02T03:04:05Z", "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/hello"]}, "rootfs": {"type": "layers", "diff_ids": [diff.to_string()]},
            "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "stowage"}]})).unwrap();
        let cdig = sha256_of(&config);
        let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": diff.to_string(), "size": 2048}]})).unwrap();
        let mdig = sha256_of(&manifest);
        let id = ids::image_id(&cdig);
        store
            .create_image(&NewImage {
                id: id.clone(),
                top_layer: Some(layer_id),
                digest: Some(mdig.clone()),
                created: GoTime::parse("2024-01-02T03:04:05Z"),
                metadata: None,
                names: vec![],
            })
            .unwrap();
        store.set_big_data(&id, cdig.as_ref(), &config).unwrap();
        store
            .set_big_data(&id, &images::manifest_key(&mdig), &manifest)
            .unwrap();
        store
            .set_big_data(&id, images::MANIFEST_KEY, &manifest)
            .unwrap();
        store
            .set_big_data(&id, &images::signature_key(&mdig), b"")
            .unwrap();
        store
            .set_image_metadata(&id, &format!(r#"{{"signatures-sizes":{{"{mdig}":[]}}}}"#))
            .unwrap();
        store
            .add_names(&id, &["localhost/written:1".into()])
            .unwrap();
        compare_with_podman(&env, &store);
        assert!(env
            .podman(&["image", "exists", "localhost/written:1"])
            .status
            .success());
    }
    let out = env.podman(&["rmi", "localhost/written:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_store_empty(&env);
}
