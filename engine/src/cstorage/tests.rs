//! Store-level tests on temporary directories.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::compression::Compression;
use crate::digest::sha256_of;
use crate::error::Error;

fn digests_for(content: &[u8]) -> LayerDigests {
    LayerDigests {
        compressed_digest: Some(sha256_of(&[content, b"gz"].concat())),
        compressed_size: Some(content.len() as u64 + 2),
        diff_digest: sha256_of(content),
        diff_size: 10240,
        compression: Compression::Gzip,
        uid_set: BTreeSet::from([0]),
        gid_set: BTreeSet::from([0]),
    }
}

/// Write one layer with a file `f` holding `content`; returns its record.
fn put_layer(store: &Store, parent: Option<&str>, content: &[u8]) -> LayerRecord {
    let d = digests_for(content);
    let id = ids::layer_id(parent, &d.diff_digest);
    let h = store
        .begin_layer(&NewLayer {
            id,
            parent: parent.map(str::to_string),
            names: vec![],
        })
        .unwrap();
    h.diff_dir().write("f", content).unwrap();
    h.create_tar_split()
        .unwrap()
        .write_all(b"placeholder")
        .unwrap();
    store.finish_layer(h, &d).unwrap()
}

/// Build an image from `layers` contents with `history` entries and `names`; returns its ID.
fn put_image(store: &Store, layers: &[&[u8]], label: &str, names: &[&str]) -> String {
    let mut top: Option<String> = None;
    let mut diff_ids = vec![];
    for c in layers {
        let rec = match store.layer(&ids::layer_id(top.as_deref(), &sha256_of(c))) {
            Ok(r) => r,
            Err(_) => put_layer(store, top.as_deref(), c),
        };
        diff_ids.push(rec.diff_digest.clone());
        top = Some(rec.id);
    }
    let history: Vec<_> = (0..layers.len())
        .map(|i| serde_json::json!({"created": "2023-11-14T22:13:20Z", "created_by": format!("step {i}")}))
        .collect();
    let config = serde_json::json!({
        "created": "2023-11-14T22:13:20Z", "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Labels": {"l": label}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = sha256_of(&config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": layers.iter().map(|c| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256_of(&[*c, b"gz"].concat()).to_string(), "size": c.len() + 2})).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let md = sha256_of(&manifest_bytes);
    let id = ids::image_id(&config_digest);
    store
        .create_image(&NewImage {
            id: id.clone(),
            top_layer: top,
            digest: Some(md.clone()),
            created: GoTime::parse("2023-11-14T22:13:20Z"),
            metadata: None,
            names: vec![],
            big_data: vec![],
        })
        .unwrap();
    store
        .set_big_data(&id, config_digest.as_ref(), &config_bytes)
        .unwrap();
    store
        .set_big_data(&id, &images::manifest_key(&md), &manifest_bytes)
        .unwrap();
    store
        .set_big_data(&id, images::MANIFEST_KEY, &manifest_bytes)
        .unwrap();
    store
        .set_big_data(&id, &images::signature_key(&md), b"")
        .unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    store.add_names(&id, &names).unwrap();
    id
}

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

fn mode(p: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn open_creates_minimal_layout_and_rejects_other_drivers() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let store = Store::open(&root, Some(&t.path().join("run")), None).unwrap();
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("overlay")), 0o700);
    assert_eq!(mode(&root.join("overlay/l")), 0o755);
    assert_eq!(mode(&root.join("overlay-layers")), 0o700);
    assert_eq!(mode(&root.join("overlay-images")), 0o700);
    assert!(store.images().unwrap().is_empty());
    assert!(store.layers().unwrap().is_empty());
    assert!(store.containers().unwrap().is_empty());
    assert!(!store.mount_program());

    let err = Store::open(&t.path().join("v"), None, Some("vfs")).unwrap_err();
    assert!(
        err.to_string()
            .contains("only the overlay driver is supported"),
        "{err}"
    );
    std::fs::create_dir_all(t.path().join("v2/vfs-layers")).unwrap();
    let err = Store::open(&t.path().join("v2"), None, None).unwrap_err();
    assert!(err.to_string().contains("\"vfs\""), "{err}");

    let ro = Store::open_read_only(&t.path().join("missing"), None).unwrap();
    assert!(ro.images().unwrap().is_empty());
    assert!(ro.layers().unwrap().is_empty());
    assert!(!t.path().join("missing").exists());
}

#[test]
fn layer_write_creates_overlay_layout() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let store = Store::open(&root, None, None).unwrap();
    let base = put_layer(&store, None, b"base");
    let o = root.join("overlay");
    let bdir = o.join(&base.id);
    assert_eq!(mode(&bdir), 0o700);
    assert_eq!(mode(&bdir.join("diff")), 0o555);
    assert_eq!(mode(&bdir.join("work")), 0o700);
    assert_eq!(mode(&bdir.join("merged")), 0o700);
    assert_eq!(mode(&bdir.join("empty")), 0o700);
    assert!(!bdir.join("lower").exists());
    let blink = std::fs::read_to_string(bdir.join("link")).unwrap();
    assert!(ids::is_link_id(&blink) && blink.len() == 26, "{blink}");
    assert_eq!(
        std::fs::read_link(o.join("l").join(&blink)).unwrap(),
        std::path::PathBuf::from(format!("../{}/diff", base.id))
    );
    assert_eq!(
        std::fs::read(o.join("l").join(&blink).join("f")).unwrap(),
        b"base"
    );

    std::fs::set_permissions(bdir.join("diff"), std::fs::Permissions::from_mode(0o751)).unwrap();
    let child = put_layer(&store, Some(&base.id), b"child");
    let cdir = o.join(&child.id);
    assert_eq!(
        mode(&cdir.join("diff")),
        0o751,
        "child diff mode copies the parent's"
    );
    assert!(!cdir.join("empty").exists());
    assert_eq!(
        std::fs::read_to_string(cdir.join("lower")).unwrap(),
        format!("l/{blink}")
    );
    let clink = std::fs::read_to_string(cdir.join("link")).unwrap();
    let grand = put_layer(&store, Some(&child.id), b"grand");
    assert_eq!(
        std::fs::read_to_string(o.join(&grand.id).join("lower")).unwrap(),
        format!("l/{clink}:l/{blink}")
    );
    assert_eq!(
        store.layer_lowers(&grand.id).unwrap(),
        vec![child.id.clone(), base.id.clone()]
    );
    // A missing l/ symlink falls back to scanning the link files.
    std::fs::remove_file(o.join("l").join(&clink)).unwrap();
    assert_eq!(
        store.layer_lowers(&grand.id).unwrap(),
        vec![child.id.clone(), base.id.clone()]
    );

    let chain: Vec<String> = store
        .layer_chain(&grand.id)
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(
        chain,
        vec![base.id.clone(), child.id.clone(), grand.id.clone()]
    );
    let rec = store.layer(&child.id).unwrap();
    assert_eq!(rec.diff_digest, sha256_of(b"child").to_string());
    assert_eq!(rec.compression, 2);
    assert!(!rec.is_incomplete());
    assert!(rec.created.is_some());
    assert_eq!(
        store
            .layers_by_diff_digest(&sha256_of(b"base"))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .layers_by_compressed_digest(&sha256_of(b"basegz"))
            .unwrap()[0]
            .id,
        base.id
    );
    assert_eq!(
        store.layer_diff_dir(&base.id).unwrap().read("f").unwrap(),
        b"base"
    );
    assert_eq!(
        mode(&root.join("overlay-layers").join("layers.json")),
        0o600
    );
    assert_eq!(
        std::fs::read(root.join("overlay-layers/layers.lock"))
            .unwrap()
            .len(),
        64
    );
    // Writing the same layer again is refused.
    assert!(store
        .begin_layer(&NewLayer {
            id: base.id.clone(),
            parent: None,
            names: vec![]
        })
        .is_err());
}

#[test]
fn incomplete_layer_is_recorded_first_and_cleaned_up() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let store = Store::open(&root, None, None).unwrap();
    let d = digests_for(b"x");
    let id = ids::layer_id(None, &d.diff_digest);
    let h = store
        .begin_layer(&NewLayer {
            id: id.clone(),
            parent: None,
            names: vec![],
        })
        .unwrap();
    let on_disk = std::fs::read_to_string(root.join("overlay-layers/layers.json")).unwrap();
    assert!(on_disk.contains("\"incomplete\":true"), "{on_disk}");
    assert!(
        store.layers().unwrap().is_empty(),
        "incomplete layers are not listed"
    );
    // Another store in this process does not delete a layer this process is writing.
    let other = Store::open(&root, None, None).unwrap();
    assert!(root.join("overlay").join(&id).exists());
    // Finishing without a tar-split is refused (and the refused layer is removed).
    let err = store.finish_layer(h, &d).unwrap_err();
    assert!(err.to_string().contains("tar-split"), "{err}");
    assert!(!root.join("overlay").join(&id).exists());
    assert_eq!(
        std::fs::read_dir(root.join("overlay/l")).unwrap().count(),
        0
    );

    // Dropping a handle aborts.
    let h = other
        .begin_layer(&NewLayer {
            id: id.clone(),
            parent: None,
            names: vec![],
        })
        .unwrap();
    h.create_tar_split().unwrap();
    drop(h);
    assert!(!root.join("overlay").join(&id).exists());
    assert!(!root
        .join("overlay-layers")
        .join(format!("{id}.tar-split.gz"))
        .exists());
    assert_eq!(
        std::fs::read_to_string(root.join("overlay-layers/layers.json")).unwrap(),
        "[]"
    );

    // A record left incomplete by a dead writer is deleted at the next open for writing.
    drop(store);
    drop(other);
    let dead = format!(
        r#"[{{"id":"{id}","created":"2020-01-01T00:00:00Z","flags":{{"incomplete":true}}}}]"#
    );
    std::fs::write(root.join("overlay-layers/layers.json"), dead).unwrap();
    std::fs::create_dir_all(root.join("overlay").join(&id).join("diff")).unwrap();
    std::fs::write(
        root.join("overlay").join(&id).join("link"),
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        format!("../{id}/diff"),
        root.join("overlay/l/ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    )
    .unwrap();
    let ro = Store::open_read_only(&root, None).unwrap();
    assert!(ro.layers().unwrap().is_empty());
    assert!(
        root.join("overlay").join(&id).exists(),
        "read-only opens do not clean up"
    );
    let _store = Store::open(&root, None, None).unwrap();
    assert!(!root.join("overlay").join(&id).exists());
    assert!(!root.join("overlay/l/ABCDEFGHIJKLMNOPQRSTUVWXYZ").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("overlay-layers/layers.json")).unwrap(),
        "[]"
    );
}

#[test]
fn orphaned_layer_directory_is_replaced() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let store = Store::open(&root, None, None).unwrap();
    let id = ids::layer_id(None, &sha256_of(b"o"));
    std::fs::create_dir_all(root.join("overlay").join(&id).join("diff/stale")).unwrap();
    let rec = put_layer(&store, None, b"o");
    assert_eq!(rec.id, id);
    assert!(!root.join("overlay").join(&id).join("diff/stale").exists());
    assert_eq!(store.layer_diff_dir(&id).unwrap().read("f").unwrap(), b"o");
}

#[test]
fn parallel_layer_writes_from_threads() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&t.path().join("root"), None, None).unwrap();
    let handles: Vec<_> = (0..4u8)
        .map(|i| {
            store
                .begin_layer(&NewLayer {
                    id: ids::layer_id(None, &sha256_of(&[i])),
                    parent: None,
                    names: vec![],
                })
                .unwrap()
        })
        .collect();
    std::thread::scope(|s| {
        for (i, h) in handles.into_iter().enumerate() {
            let store = &store;
            s.spawn(move || {
                h.diff_dir().write("f", [i as u8]).unwrap();
                h.create_tar_split().unwrap();
                let mut d = digests_for(&[i as u8]);
                d.diff_digest = sha256_of(&[i as u8]);
                store.finish_layer(h, &d).unwrap();
            });
        }
    });
    assert_eq!(store.layers().unwrap().len(), 4);
    // All pins are gone: the kernel lock was released.
    assert!(!store
        .layers_lock
        .is_pinned(&ids::layer_id(None, &sha256_of(&[0]))));
}

#[test]
fn images_names_lookups_and_big_data() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let store = Store::open(&root, None, None).unwrap();
    let a = put_image(
        &store,
        &[b"one", b"two"],
        "a",
        &["localhost/x:1", "quay.io/y/z:latest"],
    );
    let img = store.image("localhost/x:1").unwrap();
    assert_eq!(img.id, a);
    assert_eq!(img.names_history, ["quay.io/y/z:latest", "localhost/x:1"]);
    assert_eq!(
        store.image("quay.io/y/z").unwrap().id,
        a,
        ":latest is implied"
    );
    assert_eq!(store.image(&a[..12]).unwrap().id, a);
    assert_eq!(store.image(&format!("sha256:{a}")).unwrap().id, a);
    let md = img.manifest_digest().unwrap();
    assert_eq!(store.image(&format!("localhost/x@{md}")).unwrap().id, a);
    assert!(matches!(
        store.image("localhost/nope:1"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.image(&format!("other/repo@{md}")),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(store.images_by_digest(&md).unwrap().len(), 1);

    let m = store.image_manifest(&img).unwrap();
    assert_eq!(m.digest, md);
    let c = store.image_config(&img).unwrap();
    assert_eq!(sha256_of(&c.bytes).digest(), a);
    assert_eq!(
        c.diff_ids().unwrap(),
        vec![sha256_of(b"one"), sha256_of(b"two")]
    );
    let layers = store.image_layers(&img).unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0].diff_digest, sha256_of(b"one").to_string());
    assert_eq!(img.big_data_names.len(), 4);
    assert_eq!(img.digests(), vec![md.to_string()]);
    let files: BTreeSet<String> = std::fs::read_dir(root.join("overlay-images").join(&a))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(files.contains("manifest"));
    assert!(files.contains(&bigdata::file_name(&format!("sha256:{a}"))));
    assert_eq!(mode(&root.join("overlay-images").join(&a)), 0o700);

    // The same image created again only gains names; a name moves between images.
    let b = put_image(&store, &[b"one"], "b", &["localhost/x:1"]);
    assert!(store.image(&a).unwrap().names == ["quay.io/y/z:latest"]);
    assert_eq!(store.image("localhost/x:1").unwrap().id, b);
    let again = store
        .create_image(&NewImage {
            id: b.clone(),
            top_layer: Some(ids::layer_id(None, &sha256_of(b"one"))),
            names: vec!["localhost/x:2".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(again.names, ["localhost/x:1", "localhost/x:2"]);
    let err = store
        .create_image(&NewImage {
            id: b.clone(),
            top_layer: None,
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("top layer"), "{err}");
    // Big data given to create_image: the files are in place and listed by the one record
    // write (sizes, digests, metadata), and an existing image takes them too.
    let c = store
        .create_image(&NewImage {
            id: b.clone(),
            top_layer: Some(ids::layer_id(None, &sha256_of(b"one"))),
            metadata: Some("{}".into()),
            big_data: vec![
                ("manifest".into(), b"{\"m\":1}".to_vec()),
                ("k".into(), vec![]),
            ],
            ..Default::default()
        })
        .unwrap();
    assert!(c.big_data_names.iter().any(|n| n == "manifest"));
    assert!(c.big_data_names.iter().any(|n| n == "k"));
    assert_eq!(c.big_data_sizes["manifest"], 7);
    assert_eq!(c.metadata, "{}");
    assert_eq!(
        store.big_data(&b, "manifest").unwrap().as_deref(),
        Some(&b"{\"m\":1}"[..])
    );
    let err = store
        .create_image(&NewImage {
            id: b.clone(),
            top_layer: Some(ids::layer_id(None, &sha256_of(b"one"))),
            big_data: vec![(String::new(), vec![])],
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("empty key"), "{err}");
    store.remove_names(&b, &["localhost/x:2".into()]).unwrap();
    assert_eq!(store.image(&b).unwrap().names, ["localhost/x:1"]);
    assert!(store.add_names(&b, &["bad name".into()]).is_err());
    // The token in images.lock changes with each write.
    let t1 = std::fs::read(root.join("overlay-images/images.lock")).unwrap();
    store.set_image_metadata(&b, "{}").unwrap();
    let t2 = std::fs::read(root.join("overlay-images/images.lock")).unwrap();
    assert_eq!(t2.len(), 64);
    assert_ne!(t1, t2);
}

#[test]
fn delete_image_keeps_shared_layers_and_respects_containers() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let store = Store::open(&root, None, None).unwrap();
    let a = put_image(&store, &[b"one", b"two"], "a", &["localhost/a:1"]);
    let b = put_image(&store, &[b"one", b"three"], "b", &["localhost/b:1"]);
    let base = ids::layer_id(None, &sha256_of(b"one"));
    let two = ids::layer_id(Some(&base), &sha256_of(b"two"));
    let base_link = std::fs::read_to_string(root.join("overlay").join(&base).join("link")).unwrap();

    // A container of image a blocks its removal.
    std::fs::create_dir_all(root.join("overlay-containers")).unwrap();
    std::fs::write(
        root.join("overlay-containers/containers.json"),
        format!(
            r#"[{{"id":"{}","names":["c1"],"image":"{a}","layer":"{}"}}]"#,
            "c".repeat(64),
            "d".repeat(64)
        ),
    )
    .unwrap();
    let err = store.delete_image(&a).unwrap_err();
    assert!(err.to_string().contains("c1"), "{err}");
    std::fs::write(root.join("overlay-containers/containers.json"), "[]").unwrap();

    let del = store.delete_image("localhost/a:1").unwrap();
    assert_eq!(del.id, a);
    assert_eq!(del.names, ["localhost/a:1"]);
    assert_eq!(del.layers, vec![two.clone()], "the shared base layer stays");
    assert!(!root.join("overlay").join(&two).exists());
    assert!(!root.join("overlay-images").join(&a).exists());
    assert!(!root
        .join("overlay-layers")
        .join(format!("{two}.tar-split.gz"))
        .exists());
    assert!(root.join("overlay").join(&base).exists());
    let del = store.delete_image(&b).unwrap();
    assert_eq!(del.layers.len(), 2);
    assert!(!root.join("overlay/l").join(base_link).exists());
    assert_eq!(
        std::fs::read_to_string(root.join("overlay-layers/layers.json")).unwrap(),
        "[]"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("overlay-images/images.json")).unwrap(),
        "[]"
    );
    assert_eq!(
        std::fs::read_dir(root.join("overlay/l")).unwrap().count(),
        0
    );
}

#[test]
fn mounted_layers_are_not_removed() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let run = t.path().join("run");
    let store = Store::open(&root, Some(&run), None).unwrap();
    let a = put_image(&store, &[b"one"], "a", &["localhost/a:1"]);
    let top = ids::layer_id(None, &sha256_of(b"one"));
    std::fs::create_dir_all(run.join("overlay-layers")).unwrap();
    std::fs::write(
        run.join("overlay-layers/mountpoints.json"),
        format!(r#"[{{"id":"{top}","path":"/x","count":1}}]"#),
    )
    .unwrap();
    let err = store.delete_image(&a).unwrap_err();
    assert!(err.to_string().contains("mounted"), "{err}");
    std::fs::write(run.join("overlay-layers/mountpoints.json"), "[]").unwrap();
    store.delete_image(&a).unwrap();
}

#[test]
fn ops_list_inspect_tag_untag_rmi_prune() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let store = Store::open(&root, None, None).unwrap();
    let parent = put_image(&store, &[b"one"], "p", &["localhost/p:1"]);
    let child = put_image(
        &store,
        &[b"one", b"two"],
        "c",
        &["localhost/c:1", "localhost/c:2"],
    );

    let list = catalog::list_images(&store, false).unwrap();
    assert_eq!(list.len(), 3, "one entry per tagged name");
    let c = list.iter().find(|s| s.id == child).unwrap();
    assert_eq!(c.parent_id, parent);
    assert_eq!(c.repo_digests.len(), 1);
    assert!(c.repo_digests[0].starts_with("localhost/c@sha256:"));
    let img = store.image(&child).unwrap();
    assert_eq!(c.size, 2 * 10240 + img.big_data_size());
    assert_eq!(c.created, 1_700_000_000);
    assert_eq!(c.created_at, "2023-11-14T22:13:20Z");
    let json = serde_json::to_value(c).unwrap();
    assert_eq!(json["RepoTags"], serde_json::Value::Null);
    assert_eq!(json["Labels"]["l"], "c");
    assert!(json.get("Dangling").is_none());
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "Id",
            "ParentId",
            "RepoTags",
            "RepoDigests",
            "Size",
            "SharedSize",
            "VirtualSize",
            "Labels",
            "Containers",
            "Names",
            "Digest",
            "History",
            "Created",
            "CreatedAt"
        ]
    );

    let ins = catalog::inspect_image(&store, "localhost/c:2").unwrap();
    assert_eq!(ins.parent, parent);
    assert_eq!(ins.repo_tags, ["localhost/c:1", "localhost/c:2"]);
    assert_eq!(ins.root_fs.layers.as_ref().unwrap().len(), 2);
    let base = ids::layer_id(None, &sha256_of(b"one"));
    assert_eq!(
        ins.graph_driver.data["LowerDir"],
        store.layer_path(&base).join("diff").display().to_string()
    );
    assert_eq!(ins.manifest_type, OCI);
    let ij = serde_json::to_value(&ins).unwrap();
    let keys: Vec<&str> = ij.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "Id",
            "Digest",
            "RepoTags",
            "RepoDigests",
            "Parent",
            "Comment",
            "Created",
            "Config",
            "Version",
            "Author",
            "Architecture",
            "Os",
            "Size",
            "VirtualSize",
            "GraphDriver",
            "RootFS",
            "Labels",
            "Annotations",
            "ManifestType",
            "User",
            "History",
            "NamesHistory"
        ]
    );
    assert_eq!(
        ij["Config"],
        serde_json::json!({"Env": ["PATH=/bin"], "Labels": {"l": "c"}})
    );

    assert!(catalog::image_exists(&store, "localhost/p:1").unwrap());
    assert!(!catalog::image_exists(&store, "localhost/p:2").unwrap());
    catalog::tag(&store, "localhost/p:1", &["localhost/p:2".into()]).unwrap();
    assert!(catalog::image_exists(&store, "localhost/p:2").unwrap());
    assert!(catalog::tag(&store, "localhost/p:1", &["localhost/p@sha256:00".into()]).is_err());
    assert!(catalog::untag(&store, "localhost/p:1", &["localhost/zzz:1".into()]).is_err());
    assert_eq!(
        catalog::untag(&store, &parent, &[]).unwrap(),
        ["localhost/p:1", "localhost/p:2"]
    );
    // Untagged with a child: intermediate, hidden unless `all`.
    assert_eq!(catalog::list_images(&store, false).unwrap().len(), 2);
    let all = catalog::list_images(&store, true).unwrap();
    let p = all.iter().find(|s| s.id == parent).unwrap();
    assert!(!p.dangling);
    assert!(
        catalog::prune(&store, catalog::PruneScope::Dangling)
            .unwrap()
            .is_empty(),
        "intermediate images are not pruned"
    );

    // rmi by one of two names only untags.
    let r = catalog::remove_image(&store, "localhost/c:1", false).unwrap();
    assert_eq!(r.untagged, ["localhost/c:1"]);
    assert!(r.deleted.is_empty());
    // By ID with one name left: removed, and the now dangling parent with it.
    let r = catalog::remove_image(&store, &child[..12], false).unwrap();
    assert_eq!(r.deleted, vec![child.clone(), parent.clone()]);
    assert_eq!(r.untagged, ["localhost/c:2"]);
    assert!(store.images().unwrap().is_empty());
    assert!(store.layers().unwrap().is_empty());

    // prune removes dangling images.
    let d = put_image(&store, &[b"z"], "d", &[]);
    let list = catalog::list_images(&store, false).unwrap();
    assert!(list[0].dangling);
    assert_eq!(
        catalog::prune(&store, catalog::PruneScope::Dangling).unwrap(),
        vec![d]
    );
    assert!(matches!(
        catalog::remove_image(&store, "localhost/gone:1", false),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn rmi_by_id_with_several_names_needs_force() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&t.path().join("root"), None, None).unwrap();
    let a = put_image(&store, &[b"one"], "a", &["localhost/a:1", "localhost/a:2"]);
    let err = catalog::remove_image(&store, &a, false).unwrap_err();
    assert!(err.to_string().contains("please force removal"), "{err}");
    let r = catalog::remove_image(&store, &a, true).unwrap();
    assert_eq!(r.deleted, vec![a]);
    assert_eq!(r.untagged.len(), 2);
}

#[test]
fn split_repo_tag_digest_cases() {
    assert_eq!(
        split_repo_tag_digest("localhost/x:1"),
        ("localhost/x", Some("1"), None)
    );
    assert_eq!(
        split_repo_tag_digest("localhost:5000/x"),
        ("localhost:5000/x", None, None)
    );
    assert_eq!(
        split_repo_tag_digest("localhost:5000/x:t@sha256:ab"),
        ("localhost:5000/x", Some("t"), Some("sha256:ab"))
    );
}
