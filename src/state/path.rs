//! Where a journal is: its default place next to the manifest, and the file a given path
//! stands for.

use std::path::{Path, PathBuf};

/// The file a journal path stands for, symlinks resolved: every name of one journal (a
/// symlink, a path through a linked folder) shares one lock, and compaction rewrites the file
/// the link points to, keeping the link a link. A journal that does not exist yet resolves
/// through its folder.
pub fn resolve(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            std::fs::canonicalize(parent).map_or_else(|_| path.to_path_buf(), |p| p.join(name))
        }
        _ => path.to_path_buf(),
    }
}

/// The journal's default location: next to the manifest, `<stem>.imsreg-state.jsonl`, so re-runs
/// of the same manifest (cron) find it without a flag.
pub fn default_path(manifest: &Path) -> PathBuf {
    let stem = manifest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imsreg".to_string());
    manifest.with_file_name(format!("{stem}.imsreg-state.jsonl"))
}

/// The default journal of shard `index` of `total` (`--shard K/N`): next to the manifest,
/// `<stem>.shard-K-of-N.imsreg-state.jsonl`, so that shards never share a journal (nor its
/// lock, which follows the journal's path) unless `--state` says so.
pub fn shard_path(manifest: &Path, index: u32, total: u32) -> PathBuf {
    let stem = manifest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imsreg".to_string());
    manifest.with_file_name(format!(
        "{stem}.shard-{index}-of-{total}.imsreg-state.jsonl"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shard_has_its_own_journal() {
        let first = shard_path(Path::new("waves/wave-1.yaml"), 1, 3);
        assert_eq!(
            first,
            Path::new("waves/wave-1.shard-1-of-3.imsreg-state.jsonl")
        );
        let second = shard_path(Path::new("waves/wave-1.yaml"), 2, 3);
        assert_ne!(first, second);
        assert_ne!(first, default_path(Path::new("waves/wave-1.yaml")));
    }

    #[test]
    fn default_path_sits_next_to_the_manifest() {
        assert_eq!(
            default_path(Path::new("waves/wave-1.yaml")),
            Path::new("waves/wave-1.imsreg-state.jsonl")
        );
        assert_eq!(
            default_path(Path::new("m.yml")),
            Path::new("m.imsreg-state.jsonl")
        );
    }
}
