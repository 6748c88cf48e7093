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
use std::path::Path;

use serde_json::{json, Value};
use stowage_engine::compression::Compression;
use stowage_engine::cstorage::{
    catalog, ids, images, GoTime, LayerDigests, NewImage, NewLayer, Store,
};
use stowage_engine::digest::sha256_of;
use stowage_engine::oci_layout::OciDir;
use stowage_fixtures::builder::{History, ImageBuilder};
use stowage_fixtures::layer::{compress, LayerCompression, LayerSpec};
use stowage_fixtures::tools::{require, run, PodmanStore};

/// A two-layer OCI layout at `dir` with tags `t1` and `t0` (t1's parent image): a config
/// with the fields podman reshapes (ports, user, hostname), fractional creation times, a
/// commented and an empty-layer history entry, and a manifest annotation. Returns t1's
/// (manifest digest, config digest, diffIDs).
fn make_oci_layout(dir: &Path) -> (String, String, Vec<String>) {
    let layout = OciDir::create(dir).unwrap();
    let mut l1 = LayerSpec::new("l1");
    l1.file("etc/hello.txt", "hello world\n");
    let mut l2 = LayerSpec::new("l2");
    l2.file("etc/b", "b\n");
    let gz = LayerCompression::Gzip;
    // t1: the image; t0: its parent in podman's sense (same layers, one history entry less).
    let mut t1 = None;
    for (tag, label) in [("t1", "b"), ("t0", "base")] {
        let mut image = ImageBuilder::new()
            .created("2023-11-14T22:13:20.5Z")
            .author("oracle")
            .runtime_config(json!({
                "User": "1000", "ExposedPorts": {"80/tcp": {}}, "Env": ["PATH=/bin"],
                "Cmd": ["/bin/sh"], "WorkingDir": "/", "Labels": {"a": label},
                "Hostname": "dropped-by-podman"}))
            .layer_with_history(
                &l1,
                gz,
                History::new("l1")
                    .at("2023-11-14T22:13:20Z")
                    .comment("first"),
            )
            .layer(&l2, gz)
            .annotation("org.example", tag);
        if tag == "t1" {
            image = image.empty_layer(History::new("env"));
        }
        let image = image.build().unwrap();
        image.write(&layout, Some(tag)).unwrap();
        if tag == "t1" {
            t1 = Some(image);
        }
    }
    let t1 = t1.expect("t1 was built");
    let diff_ids = t1.diff_ids().iter().map(|d| d.to_string()).collect();
    (
        t1.manifest_digest.to_string(),
        t1.config_digest.to_string(),
        diff_ids,
    )
}

/// Sort a `podman images` JSON array so row order (unstable in podman for equal times)
/// does not matter.
fn sorted(v: Value) -> Vec<Value> {
    let mut rows = v.as_array().expect("array").clone();
    rows.sort_by_key(|r| r.to_string());
    rows
}

fn compare_with_podman(env: &PodmanStore, store: &Store) {
    let ours = serde_json::to_value(catalog::list_images(store, false).unwrap()).unwrap();
    let theirs = env.podman_json(["images", "--format", "json"]);
    assert_eq!(sorted(ours), sorted(theirs), "podman images --format json");
    let ours_all = serde_json::to_value(catalog::list_images(store, true).unwrap()).unwrap();
    let theirs_all = env.podman_json(["images", "--all", "--format", "json"]);
    assert_eq!(
        sorted(ours_all),
        sorted(theirs_all),
        "podman images --all --format json"
    );
    for img in store.images().unwrap() {
        let ours = serde_json::to_value(catalog::inspect_image(store, &img.id).unwrap()).unwrap();
        let theirs = env.podman_json(["image", "inspect", &img.id]);
        assert_eq!(ours, theirs[0], "podman image inspect {}", img.id);
        // Key order too.
        let ok: Vec<&String> = ours.as_object().unwrap().keys().collect();
        let tk: Vec<&String> = theirs[0].as_object().unwrap().keys().collect();
        assert_eq!(ok, tk);
    }
}

fn assert_store_empty(env: &PodmanStore) {
    assert_eq!(
        env.podman_json(["images", "--all", "--format", "json"]),
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
    if !require(
        "podman_and_skopeo_agree_with_the_store",
        &["podman", "skopeo"],
    ) {
        return;
    }
    let env = PodmanStore::new();
    let oci = env.dir().join("oci");
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
    run(env.podman(["untag", "localhost/oracle-base:1"]));
    compare_with_podman(&env, &Store::open_read_only(&env.root, None).unwrap());
    // podman's own tag, seen by the engine.
    run(env.podman(["tag", "localhost/oracle:1", "quay.io/example/oracle:2"]));
    {
        let store = Store::open(&env.root, Some(&env.runroot), None).unwrap();
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
        let store = Store::open(&env.root, Some(&env.runroot), None).unwrap();
        catalog::tag(
            &store,
            "localhost/oracle:1",
            &["localhost/oracle:extra".into()],
        )
        .unwrap();
        compare_with_podman(&env, &store);
    }
    let out = run(env.podman(["rmi", "localhost/oracle:extra"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Untagged: localhost/oracle:extra"));
    run(env.podman(["rmi", "localhost/oracle:1"]));
    assert_store_empty(&env);

    // 5. An image written through the engine's layer and image API.
    {
        let store = Store::open(&env.root, Some(&env.runroot), None).unwrap();
        // The image as a pull would have it: one uncompressed layer holding /hello.
        let mut hello = LayerSpec::new("stowage");
        hello.file("hello", "from stowage\n");
        let image = ImageBuilder::new()
            .runtime_config(json!({"Cmd": ["/hello"]}))
            .layer(&hello, LayerCompression::None)
            .build()
            .unwrap();
        let layer = &image.layers[0];
        let diff = layer.diff_id.clone();
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
        let empty = compress(b"", LayerCompression::Gzip).unwrap();
        h.create_tar_split().unwrap().write_all(&empty).unwrap();
        store
            .finish_layer(
                h,
                &LayerDigests {
                    compressed_digest: Some(layer.digest.clone()),
                    compressed_size: Some(layer.size),
                    diff_digest: diff.clone(),
                    diff_size: layer.size,
                    compression: Compression::Uncompressed,
                    uid_set: BTreeSet::from([0]),
                    gid_set: BTreeSet::from([0]),
                },
            )
            .unwrap();
        let (config, cdig) = (&image.config, &image.config_digest);
        let (manifest, mdig) = (&image.manifest, &image.manifest_digest);
        let id = ids::image_id(cdig);
        store
            .create_image(&NewImage {
                id: id.clone(),
                top_layer: Some(layer_id),
                digest: Some(mdig.clone()),
                created: GoTime::parse("2024-01-02T03:04:05Z"),
                metadata: None,
                names: vec![],
                big_data: vec![],
            })
            .unwrap();
        store.set_big_data(&id, cdig.as_ref(), config).unwrap();
        store
            .set_big_data(&id, &images::manifest_key(mdig), manifest)
            .unwrap();
        store
            .set_big_data(&id, images::MANIFEST_KEY, manifest)
            .unwrap();
        store
            .set_big_data(&id, &images::signature_key(mdig), b"")
            .unwrap();
        store
            .set_image_metadata(&id, &format!(r#"{{"signatures-sizes":{{"{mdig}":[]}}}}"#))
            .unwrap();
        store
            .add_names(&id, &["localhost/written:1".into()])
            .unwrap();
        compare_with_podman(&env, &store);
        run(env.podman(["image", "exists", "localhost/written:1"]));
    }
    run(env.podman(["rmi", "localhost/written:1"]));
    assert_store_empty(&env);
}
