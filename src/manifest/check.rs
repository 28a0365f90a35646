//! Validation of a whole manifest: walks serde_yaml's reading of the document side by side with
//! the position index, applies the rules to every key and value, and collects all problems.
//!
//! The two readings must agree: where serde_yaml and the index (saphyr-parser) see a node
//! differently (a mapping of another size, a list where the other saw text), that is reported
//! to the user as ambiguous YAML at that place rather than guessed around. The messages speak of
//! the user's file, never of the two parsers.
//!
//! Big manifests have their `images:` entries checked a slice at a time ([`Checker::chunk`])
//! while the rest is still being indexed; everything else goes through [`Checker::top`].

use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::path::PathBuf;

use crate::ids::ImageId;

use super::bounds;
use super::fasthash::{FastHasher, FastMap};
use super::index::{Index, Kind, NodeId};
use super::model::{
    Diagnostic, ImageEntry, ImageFormat, InvalidEntry, Manifest, Settings, Severity,
};
use super::raw::{self, Raw};
use super::rules;
use super::text;

const TOP_KEYS: [&str; 3] = ["version", "settings", "images"];
const ENTRY_KEYS: [&str; 4] = ["image_id", "image_url", "name", "format"];
const SETTINGS_KEYS: [&str; 11] = [
    "region",
    "project_id",
    "endpoint",
    "obs_endpoint",
    "preflight",
    "concurrency",
    "max_active_jobs",
    "submit_rate",
    "query_rate",
    "poll_interval",
    "job_timeout",
];

/// The position index the checks look positions up in (the whole document, or one slice of
/// entries).
pub(super) struct Doc<'a> {
    pub index: &'a Index,
}

pub(super) struct Checker {
    file: String,
    diagnostics: Vec<Diagnostic>,
    fatal: bool,
    settings: Settings,
    images: Vec<ImageEntry>,
    invalid: Vec<InvalidEntry>,
    /// image_id -> line of the first entry using it.
    seen_ids: FastMap<ImageId, usize>,
    /// hash of the normalized URL -> index in `images` of the first valid entry using it.
    seen_urls: FastMap<u64, usize>,
    hasher: BuildHasherDefault<FastHasher>,
}

/// Problems of one entry, before it is known whether the entry is valid.
struct EntryProblems<'a> {
    checker: &'a mut Checker,
    problems: Vec<String>,
}

impl EntryProblems<'_> {
    fn error(&mut self, (line, column): (usize, usize), field: String, message: String) {
        self.problems.push(format!("{field}: {message}"));
        self.checker
            .push(line, column, Severity::Error, field, message);
    }
}

impl Checker {
    pub fn new(file: &str) -> Self {
        Checker {
            file: file.to_string(),
            diagnostics: Vec::new(),
            fatal: false,
            settings: Settings::default(),
            images: Vec::new(),
            invalid: Vec::new(),
            seen_ids: FastMap::default(),
            seen_urls: FastMap::default(),
            hasher: BuildHasherDefault::default(),
        }
    }

    fn push(
        &mut self,
        line: usize,
        column: usize,
        severity: Severity,
        field: impl Into<String>,
        message: String,
    ) {
        self.diagnostics.push(Diagnostic {
            file: self.file.clone(),
            line,
            column,
            severity,
            field: field.into(),
            message,
        });
    }

    pub fn fatal_at(
        &mut self,
        line: usize,
        column: usize,
        field: impl Into<String>,
        message: String,
    ) {
        self.fatal = true;
        self.push(line, column, Severity::Error, field, message);
    }

    fn fatal_node(&mut self, doc: &Doc, node: NodeId, field: impl Into<String>, message: String) {
        let (line, column) = doc.index.pos(node);
        self.fatal_at(line, column, field, message);
    }

    /// Makes room for the valid entries up front (one allocation instead of doubling).
    pub fn reserve_images(&mut self, count: usize) {
        self.images.reserve_exact(count);
    }

    pub fn finish(mut self) -> Manifest {
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        Manifest {
            path: PathBuf::from(&self.file),
            settings: self.settings,
            images: self.images,
            invalid: self.invalid,
            diagnostics: self.diagnostics,
            fatal: self.fatal,
            sha256: None,
        }
    }

    /// Reports a node that serde_yaml and the index read differently; true when they agree.
    fn agree(&mut self, doc: &Doc, node: NodeId, raw: &Raw, field: &dyn fmt::Display) -> bool {
        let index = doc.index;
        let target = index.resolve(node);
        let agree = match (index.kind(target), raw) {
            (_, Raw::Tagged(..)) => true,
            (Kind::Scalar, Raw::Seq(_) | Raw::Map(_)) => false,
            (Kind::Scalar, _) => true,
            (Kind::Seq, Raw::Seq(items)) => items.len() == index.items(target).len(),
            (Kind::Map, Raw::Map(pairs)) => pairs.len() == index.pair_count(target),
            _ => false,
        };
        if !agree {
            self.fatal_node(
                doc,
                node,
                field.to_string(),
                "ambiguous YAML: this part of the file can be read in more than one way, so \
                 imsreg will not guess (rewrite it in plain block style: one `key: value` per \
                 line, list entries on `- ` lines, text with unusual characters in quotes)"
                    .to_string(),
            );
        }
        agree
    }

    /// Checks mapping keys: each must be text and unique. Yields (key, key node, value node,
    /// value) for the keys that pass; problems go to `report`.
    fn keys<'r, 'a>(
        doc: &Doc,
        map: NodeId,
        pairs: &'r [(Raw<'a>, Raw<'a>)],
        mut report: impl FnMut((usize, usize), String),
    ) -> Vec<(&'r str, NodeId, NodeId, &'r Raw<'a>)> {
        let mut out: Vec<(&str, NodeId, NodeId, &Raw)> = Vec::with_capacity(pairs.len());
        // Big mappings (only in broken manifests) get a table, so duplicates stay linear.
        let mut seen: FastMap<&str, NodeId> = FastMap::default();
        let big = pairs.len() > 16;
        for ((key_node, value_node), (key, value)) in doc.index.pairs(map).zip(pairs) {
            let pos = doc.index.pos(key_node);
            if let (Raw::Str(serde_key), Some(index_key)) = (key, doc.index.key_text(key_node))
                && serde_key.as_ref() != index_key
            {
                report(
                    pos,
                    format!(
                        "ambiguous key: it can be read as `{}` or as `{}` (write the key \
                         plainly, e.g. `image_id:`, without quotes, escapes or unusual characters)",
                        text::shorten(serde_key),
                        text::shorten(index_key)
                    ),
                );
                continue;
            }
            let Raw::Str(key) = key else {
                report(
                    pos,
                    format!(
                        "a key is {} (keys are plain names such as image_id; quote it or fix \
                         the indentation)",
                        key.describe()
                    ),
                );
                continue;
            };
            let first = if big {
                seen.get(key.as_ref()).copied()
            } else {
                out.iter()
                    .find(|(k, ..)| *k == key.as_ref())
                    .map(|&(_, first, _, _)| first)
            };
            if let Some(first) = first {
                report(
                    pos,
                    format!(
                        "duplicate key `{}`, first given on line {} (keep one of them)",
                        text::shorten(key),
                        doc.index.pos(first).0
                    ),
                );
                continue;
            }
            if big {
                seen.insert(key.as_ref(), key_node);
            }
            out.push((key.as_ref(), key_node, value_node, value));
        }
        out
    }

    fn unknown_key_message(key: &str, known: &[&str], place: &str) -> String {
        let shown = text::shorten(key);
        if let Some(suggestion) = rules::suggest(key, known) {
            return format!("unknown key `{shown}` (did you mean `{suggestion}`?)");
        }
        let hint = if place != "settings" && SETTINGS_KEYS.contains(&key) {
            "settings go under `settings:`".to_string()
        } else if place != "an image entry" && ENTRY_KEYS.contains(&key) {
            "image entries go in the list under `images:`".to_string()
        } else {
            format!("the keys of {place} are {}", known.join(", "))
        };
        format!("unknown key `{shown}` ({hint})")
    }

    pub fn top(&mut self, doc: &Doc, root: NodeId, raw: &Raw, images_done: bool) {
        let Raw::Map(pairs) = raw else {
            if self.agree(doc, root, raw, &"manifest") {
                self.fatal_node(
                    doc,
                    root,
                    "manifest",
                    format!(
                        "the top level is {} (a manifest is a mapping with `images:` and \
                         optional `version:` and `settings:`; see examples/demo.yaml)",
                        raw.describe()
                    ),
                );
            }
            return;
        };
        if !self.agree(doc, root, raw, &"manifest") {
            return;
        }
        let mut key_problems = Vec::new();
        let keys = Self::keys(doc, root, pairs, |pos, msg| key_problems.push((pos, msg)));
        for ((line, column), message) in key_problems {
            self.fatal_at(line, column, "manifest", message);
        }
        let mut images_seen = false;
        for (key, key_node, value_node, value) in keys {
            match key {
                "version" => {
                    if let Err(message) = rules::version(value) {
                        self.fatal_node(doc, value_node, "version", message);
                    }
                }
                "settings" => self.settings(doc, value_node, value),
                "images" => {
                    images_seen = true;
                    self.images(doc, value_node, value, images_done);
                }
                other => {
                    let message = Self::unknown_key_message(other, &TOP_KEYS, "the top level");
                    self.fatal_node(doc, key_node, other.to_string(), message);
                }
            }
        }
        if !images_seen {
            self.fatal_node(
                doc,
                root,
                "images",
                "missing `images:` (list the images to register under `images:`, each with \
                 image_id and image_url)"
                    .to_string(),
            );
        }
    }

    fn settings(&mut self, doc: &Doc, node: NodeId, raw: &Raw) {
        let pairs = match raw {
            Raw::Null => return,
            Raw::Map(pairs) => pairs,
            other => {
                if self.agree(doc, node, raw, &"settings") {
                    self.fatal_node(
                        doc,
                        node,
                        "settings",
                        format!(
                            "must be a mapping of settings, found {} (indent `key: value` lines \
                             under `settings:`)",
                            other.describe()
                        ),
                    );
                }
                return;
            }
        };
        if !self.agree(doc, node, raw, &"settings") {
            return;
        }
        let mut key_problems = Vec::new();
        let keys = Self::keys(doc, node, pairs, |pos, msg| key_problems.push((pos, msg)));
        for ((line, column), message) in key_problems {
            self.fatal_at(line, column, "settings", message);
        }
        for (key, key_node, value_node, value) in keys {
            let field = format!("settings.{key}");
            if let Raw::Tagged(tag, _) = value {
                self.fatal_node(doc, value_node, field, tag_message(tag));
                continue;
            }
            let s = &mut self.settings;
            let result: Result<Option<String>, String> = match key {
                "region" => rules::region(value).map(|v| {
                    s.region = Some(v);
                    None
                }),
                "project_id" => rules::project_id(value).map(|(v, warning)| {
                    s.project_id = Some(v);
                    warning
                }),
                "endpoint" => rules::endpoint(value).map(|v| {
                    s.endpoint = Some(v);
                    None
                }),
                "obs_endpoint" => rules::obs_endpoint(value).map(|v| {
                    s.obs_endpoint = Some(v);
                    None
                }),
                "preflight" => rules::boolean(value).map(|v| {
                    s.preflight = Some(v);
                    None
                }),
                "concurrency" => rules::positive_count(value, &bounds::CONCURRENCY).map(|v| {
                    s.concurrency = Some(v);
                    None
                }),
                "max_active_jobs" => {
                    rules::positive_count(value, &bounds::MAX_ACTIVE_JOBS).map(|v| {
                        s.max_active_jobs = Some(v);
                        None
                    })
                }
                "submit_rate" => rules::rate(value).map(|v| {
                    s.submit_rate = Some(v);
                    None
                }),
                "query_rate" => rules::rate(value).map(|v| {
                    s.query_rate = Some(v);
                    None
                }),
                "poll_interval" => rules::duration(value, &bounds::POLL_INTERVAL).map(|v| {
                    s.poll_interval = Some(v);
                    None
                }),
                "job_timeout" => rules::duration(value, &bounds::JOB_TIMEOUT).map(|v| {
                    s.job_timeout = Some(v);
                    None
                }),
                other => {
                    let message = Self::unknown_key_message(other, &SETTINGS_KEYS, "settings");
                    self.fatal_node(doc, key_node, field, message);
                    continue;
                }
            };
            let (line, column) = doc.index.pos(value_node);
            match result {
                Ok(None) => {}
                Ok(Some(warning)) => self.push(line, column, Severity::Warning, field, warning),
                Err(message) => self.fatal_at(line, column, field, message),
            }
        }
    }

    fn images(&mut self, doc: &Doc, node: NodeId, raw: &Raw, images_done: bool) {
        let empty = "is empty (list at least one image, each with image_id and image_url)";
        if images_done {
            return;
        }
        match raw {
            Raw::Null => self.fatal_node(doc, node, "images", empty.to_string()),
            Raw::Seq(items) => {
                if !self.agree(doc, node, raw, &"images") {
                    return;
                }
                if items.is_empty() {
                    self.fatal_node(doc, node, "images", empty.to_string());
                }
                let nodes = doc.index.items(node);
                for (n, (item_node, item)) in nodes.iter().zip(items).enumerate() {
                    self.entry(doc, n, *item_node, item);
                }
            }
            other => {
                if self.agree(doc, node, raw, &"images") {
                    self.fatal_node(
                        doc,
                        node,
                        "images",
                        format!(
                            "must be a list of image entries, found {} (start each entry with \
                             `- image_id: ...`)",
                            other.describe()
                        ),
                    );
                }
            }
        }
    }

    /// Checks one slice of the `images:` list as serde_yaml read it (`items` are its nodes).
    /// False, with nothing checked, when serde_yaml failed or saw other entries than the index:
    /// the caller then reads the document whole, which reports the problem at its exact place.
    pub fn chunk(
        &mut self,
        doc: &Doc,
        items: &[NodeId],
        first_item: usize,
        read: Result<Raw, raw::ReadError>,
    ) -> bool {
        match read {
            Ok(Raw::Seq(raws)) if raws.len() == items.len() => {
                for (n, (item_node, item)) in items.iter().zip(&raws).enumerate() {
                    self.entry(doc, first_item + n, *item_node, item);
                }
                true
            }
            _ => false,
        }
    }

    fn entry(&mut self, doc: &Doc, n: usize, node: NodeId, raw: &Raw) {
        let index = doc.index;
        let entry_pos = index.pos(node);
        let prefix = EntryPath(n);
        let mut found = EntryProblems {
            checker: self,
            problems: Vec::new(),
        };
        let pairs = match raw {
            Raw::Map(pairs) => pairs,
            Raw::Tagged(tag, _) => {
                found.error(entry_pos, prefix.to_string(), tag_message(tag));
                return found.into_invalid(entry_pos.0, None, None, None);
            }
            other => {
                let message = format!(
                    "an image entry must be a mapping with image_id and image_url, found {} \
                     (write `- image_id: <uuid>` and `image_url: bucket:object` below it)",
                    other.describe()
                );
                if found.checker.agree(doc, node, raw, &prefix) {
                    found.error(entry_pos, prefix.to_string(), message);
                }
                return found.into_invalid(entry_pos.0, None, None, None);
            }
        };
        if !found.checker.agree(doc, node, raw, &prefix) {
            return;
        }
        let mut key_problems = Vec::new();
        let keys = Checker::keys(doc, node, pairs, |pos, msg| key_problems.push((pos, msg)));
        for (pos, message) in key_problems {
            found.error(pos, prefix.to_string(), message);
        }
        let mut fields: [Option<(NodeId, &Raw)>; 4] = [None; 4];
        for (key, key_node, value_node, value) in keys {
            match ENTRY_KEYS.iter().position(|k| *k == key) {
                Some(slot) => fields[slot] = Some((value_node, value)),
                None => {
                    let message = Checker::unknown_key_message(key, &ENTRY_KEYS, "an image entry");
                    found.error(index.pos(key_node), format!("{prefix}.{key}"), message);
                }
            }
        }
        let [id_field, url_field, name_field, format_field] = fields;

        let id_value = untagged(&mut found, doc, &prefix, "image_id", id_field);
        let url_value = untagged(&mut found, doc, &prefix, "image_url", url_field);
        let name_value = untagged(&mut found, doc, &prefix, "name", name_field);
        let format_value = untagged(&mut found, doc, &prefix, "format", format_field);

        let image_id = match (id_value, id_field) {
            (Some((pos, value)), _) => match rules::image_id(value) {
                Ok(id) => Some((pos, id)),
                Err(message) => {
                    found.error(pos, format!("{prefix}.image_id"), message);
                    None
                }
            },
            (None, None) => {
                found.error(
                    entry_pos,
                    format!("{prefix}.image_id"),
                    "missing (add `image_id:` with the UUID of the image created in IMS)"
                        .to_string(),
                );
                None
            }
            (None, Some(_)) => None,
        };
        let explicit_format = match format_value {
            Some((pos, value)) => match rules::format_value(value) {
                Ok(format) => Some(Some(format)),
                Err(message) => {
                    found.error(pos, format!("{prefix}.format"), message);
                    None
                }
            },
            None => Some(None),
        };
        let mut format_warning = None;
        let url = match (url_value, url_field) {
            (Some((pos, value)), _) => match rules::image_url(value) {
                Ok(url) => match explicit_format {
                    Some(explicit) => match rules::entry_format(&url.object, explicit) {
                        Ok((format, warning)) => {
                            format_warning =
                                warning.map(|w| (format_value.map(|f| f.0).unwrap_or(pos), w));
                            Some((pos, url, format))
                        }
                        Err(message) => {
                            found.error(pos, format!("{prefix}.image_url"), message);
                            None
                        }
                    },
                    None => None,
                },
                Err(message) => {
                    found.error(pos, format!("{prefix}.image_url"), message);
                    None
                }
            },
            (None, None) => {
                found.error(
                    entry_pos,
                    format!("{prefix}.image_url"),
                    "missing (add `image_url:` with the OBS location, bucket:object or \
                     obs://bucket/object)"
                        .to_string(),
                );
                None
            }
            (None, Some(_)) => None,
        };
        let name = match name_value {
            Some((pos, value)) => match rules::name(value) {
                Ok(name) => Some(name),
                Err(message) => {
                    found.error(pos, format!("{prefix}.name"), message);
                    None
                }
            },
            None => None,
        };
        if let Some(((line, column), message)) = format_warning {
            found.checker.push(
                line,
                column,
                Severity::Warning,
                format!("{prefix}.format"),
                message,
            );
        }
        if let Some((pos, id)) = &image_id {
            match found.checker.seen_ids.get(id) {
                Some(&first_line) => found.error(
                    *pos,
                    format!("{prefix}.image_id"),
                    format!(
                        "{id} is also the image_id of the entry on line {first_line} (each image \
                         is registered once; remove or correct one of the two entries)"
                    ),
                ),
                None => {
                    found.checker.seen_ids.insert(*id, entry_pos.0);
                }
            }
        }
        match (image_id, url) {
            (Some((_, image_id)), Some((url_pos, image_url, format)))
                if found.problems.is_empty() =>
            {
                let checker = found.checker;
                let hash = checker.hasher.hash_one(&image_url);
                if let Some(&first) = checker.seen_urls.get(&hash) {
                    let earlier = &checker.images[first];
                    if earlier.image_url == image_url {
                        let message = format!(
                            "{image_url} is also the image_url of the entry on line {} (both \
                             images will be registered from the same file; check the entry is \
                             not a copy-paste slip)",
                            earlier.line
                        );
                        checker.push(
                            url_pos.0,
                            url_pos.1,
                            Severity::Warning,
                            format!("{prefix}.image_url"),
                            message,
                        );
                    }
                } else {
                    checker.seen_urls.insert(hash, checker.images.len());
                }
                checker.images.push(ImageEntry {
                    image_id,
                    image_url,
                    name,
                    format,
                    line: entry_pos.0,
                });
            }
            _ => {
                // Only invalid entries keep their values as written.
                let as_text = |f: Option<(NodeId, &Raw)>| {
                    f.and_then(|(_, raw)| raw.as_str().map(String::from))
                };
                let (raw_id, raw_url, raw_name) =
                    (as_text(id_field), as_text(url_field), as_text(name_field));
                found.into_invalid(entry_pos.0, raw_id, raw_url, raw_name)
            }
        }
    }
}

impl EntryProblems<'_> {
    fn into_invalid(
        self,
        line: usize,
        image_id: Option<String>,
        image_url: Option<String>,
        name: Option<String>,
    ) {
        self.checker.invalid.push(InvalidEntry {
            line,
            image_id,
            image_url,
            name,
            problems: self.problems,
        });
    }
}

/// `images[n]`, formatted only when a message needs it.
struct EntryPath(usize);

impl fmt::Display for EntryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "images[{}]", self.0)
    }
}

/// The value and its position, unless it carries a tag (reported).
fn untagged<'r, 'a>(
    found: &mut EntryProblems,
    doc: &Doc,
    prefix: &EntryPath,
    key: &str,
    field: Option<(NodeId, &'r Raw<'a>)>,
) -> Option<((usize, usize), &'r Raw<'a>)> {
    let (value_node, value) = field?;
    let pos = doc.index.pos(value_node);
    match value {
        Raw::Tagged(tag, _) => {
            found.error(pos, format!("{prefix}.{key}"), tag_message(tag));
            None
        }
        _ => Some((pos, value)),
    }
}

fn tag_message(tag: &str) -> String {
    format!(
        "YAML tags such as `!{}` are not supported (remove the tag)",
        text::shorten(tag)
    )
}

/// The per-format counts of the valid entries, in [`ImageFormat::ALL`] order.
pub fn format_counts(manifest: &Manifest) -> Vec<(ImageFormat, usize)> {
    ImageFormat::ALL
        .into_iter()
        .map(|f| (f, manifest.images.iter().filter(|i| i.format == f).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `values` (as serde_yaml reads it) against the positions of `positions`: two texts
    /// stand for the two readings of one file that disagree.
    fn disagreeing(positions: &str, values: &str) -> Vec<Diagnostic> {
        let index = Index::build(positions).unwrap();
        let raw = raw::read(values).unwrap();
        let mut checker = Checker::new("m.yaml");
        checker.top(&Doc { index: &index }, index.root().unwrap(), &raw, false);
        checker.finish().diagnostics
    }

    #[test]
    fn readings_that_disagree_are_reported_as_the_users_ambiguous_yaml() {
        let found = disagreeing("images: [a, b]\n", "images: [a]\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].line, found[0].column), (1, 9));
        assert!(found[0].message.starts_with("ambiguous YAML"), "{found:?}");
        assert!(found[0].message.contains("plain block style"), "{found:?}");

        let found = disagreeing("settings:\n  region: x\n", "settings:\n  regio n: x\n");
        let ambiguous: Vec<&Diagnostic> = found
            .iter()
            .filter(|d| d.message.contains("ambiguous"))
            .collect();
        assert_eq!(ambiguous.len(), 1, "{found:?}");
        assert_eq!((ambiguous[0].line, ambiguous[0].column), (2, 3));
        assert_eq!(
            ambiguous[0].message,
            "ambiguous key: it can be read as `regio n` or as `region` (write the key plainly, \
             e.g. `image_id:`, without quotes, escapes or unusual characters)"
        );
        for diagnostic in &found {
            assert!(!diagnostic.message.contains("parser"), "{diagnostic}");
        }
    }
}
