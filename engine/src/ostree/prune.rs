//! Removing what nothing references: `ostree prune --refs-only` without libostree.
//!
//! 1. The repository lock `.lock` is taken *exclusive*, as `ostree prune` takes it: no writer
//!    (stowage's or ostree's, which hold it shared for a whole transaction) is in the middle of
//!    staging objects that only a ref it has not written yet will reference.
//! 2. Every ref under `refs/heads`, `refs/remotes` and `refs/mirrors` is a root (deployments
//!    are refs too: `ostree/0/1/0`, …). From each commit, its parents (while present),
//!    its `.commitmeta`, and every dirtree, dirmeta and content object of its tree are marked.
//! 3. Every object file under `objects/` that is not marked is removed; the counts and the
//!    bytes freed are returned.

use std::collections::HashSet;

use super::lock::{OfdLock, Wait};
use super::object::{Checksum, ObjectType};
use super::repo::Repo;
use crate::error::{Error, IoContext, Result};

/// What [`Repo::prune`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneStats {
    /// Objects still referenced.
    pub kept: u64,
    /// Objects removed.
    pub removed: u64,
    /// Bytes of the removed objects.
    pub bytes_freed: u64,
}

impl Repo {
    /// Remove every object no ref reaches (module doc).
    pub fn prune(&self) -> Result<PruneStats> {
        let lock_path = self.path.join(".lock");
        let _lock = OfdLock::acquire(
            &self.dir,
            ".lock",
            0o660,
            true,
            Wait::Block,
            &lock_path.display().to_string(),
        )?
        .expect("blocking lock");
        let mut reachable: HashSet<(Checksum, ObjectType)> = HashSet::new();
        for (name, hex) in self.all_refs()? {
            let commit = Checksum::from_hex(&hex).map_err(|_| Error::Malformed {
                what: format!("ref {name} in {}", self.path.display()),
                reason: format!("{hex:?} is not a commit checksum"),
            })?;
            self.mark_commit(commit, &mut reachable)?;
        }
        let mut stats = PruneStats::default();
        let objects = self.path.join("objects");
        for prefix in std::fs::read_dir(&objects).at("listing", &objects)? {
            let prefix = prefix.at("listing", &objects)?;
            let pname = prefix.file_name();
            let Some(p) = pname.to_str().filter(|p| p.len() == 2) else {
                continue;
            };
            let dir = prefix.path();
            for entry in std::fs::read_dir(&dir).at("listing", &dir)? {
                let entry = entry.at("listing", &dir)?;
                let fname = entry.file_name();
                let Some((rest, ext)) = fname.to_str().and_then(|f| f.split_once('.')) else {
                    continue;
                };
                let ty = match ext {
                    "commit" => ObjectType::Commit,
                    "commitmeta" => ObjectType::CommitMeta,
                    "dirtree" => ObjectType::DirTree,
                    "dirmeta" => ObjectType::DirMeta,
                    "file" | "filez" => ObjectType::File,
                    _ => continue,
                };
                let Ok(checksum) = Checksum::from_hex(&format!("{p}{rest}")) else {
                    continue;
                };
                if reachable.contains(&(checksum, ty)) {
                    stats.kept += 1;
                    continue;
                }
                let path = entry.path();
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(&path).at("removing", &path)?;
                stats.removed += 1;
                stats.bytes_freed += size;
            }
        }
        Ok(stats)
    }

    /// Every ref file under `refs/heads`, `refs/remotes` and `refs/mirrors`.
    fn all_refs(&self) -> Result<Vec<(String, String)>> {
        fn walk(dir: &std::path::Path, name: &str, out: &mut Vec<(String, String)>) -> Result<()> {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io_path("listing", dir, e)),
            };
            for entry in entries {
                let entry = entry.at("listing", dir)?;
                let part = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                let full = format!("{name}/{part}");
                let ft = entry.file_type().at("stat", &path)?;
                if ft.is_dir() {
                    walk(&path, &full, out)?;
                } else if ft.is_file() && !part.starts_with('.') {
                    let hex = std::fs::read_to_string(&path).at("reading", &path)?;
                    out.push((full, hex.trim().to_string()));
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        for kind in ["heads", "remotes", "mirrors"] {
            walk(&self.path.join("refs").join(kind), kind, &mut out)?;
        }
        Ok(out)
    }

    fn mark_commit(
        &self,
        mut commit: Checksum,
        reachable: &mut HashSet<(Checksum, ObjectType)>,
    ) -> Result<()> {
        loop {
            if !reachable.insert((commit, ObjectType::Commit)) {
                return Ok(());
            }
            reachable.insert((commit, ObjectType::CommitMeta));
            let c = self.read_commit(&commit)?;
            self.mark_tree(&c.root_tree, &c.root_meta, reachable, 0)?;
            match c.parent {
                Some(p) if self.has_object(&p, ObjectType::Commit)? => commit = p,
                _ => return Ok(()),
            }
        }
    }

    fn mark_tree(
        &self,
        tree: &Checksum,
        meta: &Checksum,
        reachable: &mut HashSet<(Checksum, ObjectType)>,
        depth: usize,
    ) -> Result<()> {
        reachable.insert((*meta, ObjectType::DirMeta));
        if !reachable.insert((*tree, ObjectType::DirTree)) {
            return Ok(());
        }
        super::object::check_tree_depth(depth, || {
            format!("dirtree {tree} in {}", self.path.display())
        })?;
        let dt = self.read_dirtree(tree)?;
        for (_, c) in &dt.files {
            reachable.insert((*c, ObjectType::File));
        }
        for (_, t, m) in &dt.dirs {
            self.mark_tree(t, m, reachable, depth + 1)?;
        }
        Ok(())
    }
}
