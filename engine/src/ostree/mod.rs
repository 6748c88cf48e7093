//! ostree repositories: the parts stowage reads today.
//!
//! stowage will import images as ostree commits the way ostree-rs-ext does (a later issue).
//! What exists now is the read side that `stowage image list` needs:
//! 1. [`Repo::open`] checks that a directory is an ostree repository (`config`, `objects/`,
//!    `refs/`);
//! 2. [`Repo::list_refs`] lists refs under a prefix, as `ostree refs PREFIX` does (loose refs
//!    under `refs/heads/`; ostree keeps no packed refs);
//! 3. [`container::list_images`] turns the `ostree/container/image/*` refs that ostree-rs-ext
//!    writes back into image references ([`refescape`]).

pub mod container;
pub mod refescape;

use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::error::{Error, Result};

/// An ostree repository.
#[derive(Debug)]
pub struct Repo {
    dir: Dir,
    path: PathBuf,
}

impl Repo {
    /// Open the repository at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let dir = Dir::open_ambient_dir(path, ambient_authority()).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                what: format!("ostree repository {}", path.display()),
                hint: "pass --ostree-repo (or --sysroot) to point at the repository".into(),
            },
            _ => Error::io_path("opening ostree repository", path, e),
        })?;
        for required in ["config", "objects", "refs"] {
            if !dir.exists(required) {
                return Err(Error::NotFound {
                    what: format!("{}/{required}", path.display()),
                    hint: format!("{} is not an ostree repository", path.display()),
                });
            }
        }
        Ok(Repo {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// The repository's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Local refs under `prefix` (e.g. `ostree/container/image`), with their commit checksums,
    /// sorted by name. A missing prefix gives an empty list.
    pub fn list_refs(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let base = Path::new("refs/heads").join(prefix);
        let dir = match self.dir.open_dir(&base) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io_path("opening", self.path.join(&base), e)),
        };
        walk_refs(&dir, prefix, &self.path.join(&base), &mut out)?;
        out.sort();
        Ok(out)
    }
}

fn walk_refs(dir: &Dir, name: &str, path: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
    for entry in dir
        .entries()
        .map_err(|e| Error::io_path("listing", path, e))?
    {
        let entry = entry.map_err(|e| Error::io_path("listing", path, e))?;
        let file_name = entry.file_name();
        let Some(part) = file_name.to_str() else {
            continue;
        };
        let full = format!("{name}/{part}");
        let ft = entry
            .file_type()
            .map_err(|e| Error::io_path("stat", path.join(part), e))?;
        if ft.is_dir() {
            let sub = entry
                .open_dir()
                .map_err(|e| Error::io_path("opening", path.join(part), e))?;
            walk_refs(&sub, &full, &path.join(part), out)?;
        } else if ft.is_file() {
            let checksum = dir
                .read_to_string(part)
                .map_err(|e| Error::io_path("reading", path.join(part), e))?;
            out.push((full, checksum.trim().to_string()));
        }
    }
    Ok(())
}
