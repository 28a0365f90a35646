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
//! Because `defaults:` may come after (or be read after) the entries, it is applied to the
//! created entries in [`Checker::finish`], with the checks that need it (the tag count).

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::path::PathBuf;

use crate::ids::ImageId;

use super::bounds;
use super::create::{self, DEFAULT_KEYS};
use super::fasthash::{FastHasher, FastMap};
use super::index::{Index, Kind, NodeId};
use super::model::{
    CreateEntry, Defaults, Diagnostic, ImageEntry, ImageFormat, ImageUrl, InvalidEntry, Manifest,
    Placement, Position, RegionSettings, Settings, Severity,
};
use super::raw::{self, Raw};
use super::rules;
use super::text;

const TOP_KEYS: [&str; 4] = ["version", "settings", "defaults", "images"];
/// The keys of an entry: the first four and the last two for every entry, the four between
/// (the [`DEFAULT_KEYS`]) only for entries imsreg creates (without `image_id`).
const ENTRY_KEYS: [&str; 10] = [
    "image_id",
    "image_url",
    "name",
    "format",
    "os_version",
    "min_disk",
    "min_ram",
    "tags",
    "region",
    "project_id",
];
/// The keys of one region under `settings.regions.<region>`: its project, endpoints and quota.
const REGION_KEYS: [&str; 7] = [
    "project_id",
    "endpoint",
    "obs_endpoint",
    "concurrency",
    "max_active_jobs",
    "submit_rate",
    "query_rate",
];
/// How messages name a region's mapping under `settings.regions`.
const REGION_PLACE: &str = "a region under `settings.regions`";
const SETTINGS_KEYS: [&str; 12] = [
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
    "regions",
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
    /// The valid entries' own `region:`/`project_id:`, by line.
    placements: std::collections::HashMap<usize, Placement>,
    /// The line of the last entry checked, and whether it named a region or project: entries
    /// are placed by their line, so two on one line cannot differ in region.
    last_entry: (usize, bool),
    /// The created entries with their own values only, until [`Checker::finish`] applies
    /// `defaults:`; `create_marks` holds what that needs, one per entry.
    creates: Vec<CreateEntry>,
    create_marks: Vec<CreateMark>,
    defaults: Defaults,
    defaults_at: DefaultsAt,
    invalid: Vec<InvalidEntry>,
    /// image_id -> line of the first entry using it.
    seen_ids: FastMap<ImageId, usize>,
    /// hash of the normalized URL -> the first valid entry using it.
    seen_urls: FastMap<u64, UrlOwner>,
    /// name of a created entry -> line of the first created entry with it.
    seen_names: FastMap<String, usize>,
    /// The entries with an `image_id` and a name, to warn when a created entry has that name.
    named_images: Vec<NamedImage>,
    hasher: BuildHasherDefault<FastHasher>,
}

/// The keys `settings:` and each `settings.regions.<region>` share (a region's own quota and
/// place), read by the same rules into whichever of the two holds them.
struct QuotaKeys<'s> {
    project_id: &'s mut Option<String>,
    endpoint: &'s mut Option<String>,
    obs_endpoint: &'s mut Option<String>,
    concurrency: &'s mut Option<u32>,
    max_active_jobs: &'s mut Option<u32>,
    submit_rate: &'s mut Option<f64>,
    query_rate: &'s mut Option<f64>,
}

impl QuotaKeys<'_> {
    /// Reads `key` if it is one of these: `Ok` with a warning, if any, or `Err` with the
    /// problem; `None` for any other key.
    fn read(self, key: &str, value: &Raw) -> Option<Result<Option<String>, String>> {
        fn set<T>(slot: &mut Option<T>, read: Result<T, String>) -> Result<Option<String>, String> {
            read.map(|v| {
                *slot = Some(v);
                None
            })
        }
        Some(match key {
            "project_id" => rules::project_id(value).map(|(v, warning)| {
                *self.project_id = Some(v);
                warning
            }),
            "endpoint" => set(self.endpoint, rules::endpoint(value)),
            "obs_endpoint" => set(self.obs_endpoint, rules::obs_endpoint(value)),
            "concurrency" => set(
                self.concurrency,
                rules::positive_count(value, &bounds::CONCURRENCY),
            ),
            "max_active_jobs" => set(
                self.max_active_jobs,
                rules::positive_count(value, &bounds::MAX_ACTIVE_JOBS),
            ),
            "submit_rate" => set(self.submit_rate, rules::rate(value)),
            "query_rate" => set(self.query_rate, rules::rate(value)),
            _ => return None,
        })
    }
}

/// What [`Checker::finish`] needs of a created entry to apply `defaults:` to it.
struct CreateMark {
    /// Its index in `images:`.
    entry: usize,
    /// Where its own `tags:` value is, if it has one.
    tags_at: Option<Position>,
    /// Where the entry starts (line, column).
    at: (usize, usize),
}

/// Where the values of `defaults:` are.
#[derive(Default)]
struct DefaultsAt {
    os_version: Option<Position>,
    tags: Option<Position>,
}

/// An entry with an `image_id` and a name: where it is (compact, as there may be 100,000).
struct NamedImage {
    /// Index in `images` (the valid entries).
    image: u32,
    /// Index in `images:` (all entries).
    entry: u32,
    line: u32,
    column: u32,
}

/// The first valid entry with a URL: an index in `images` or in `creates`, in one word (the
/// top bit says which) so the table of 100,000 URLs stays as small as it was.
#[derive(Clone, Copy)]
struct UrlOwner(usize);

impl UrlOwner {
    const CREATE: usize = 1 << (usize::BITS - 1);

    fn image(index: usize) -> Self {
        UrlOwner(index)
    }

    fn create(index: usize) -> Self {
        UrlOwner(index | Self::CREATE)
    }

    /// The earlier entry's URL and line.
    fn find(self, checker: &Checker) -> Option<(&ImageUrl, usize)> {
        let index = self.0 & !Self::CREATE;
        if self.0 & Self::CREATE == 0 {
            checker.images.get(index).map(|e| (&e.image_url, e.line))
        } else {
            checker.creates.get(index).map(|e| (&e.image_url, e.line))
        }
    }
}

/// Problems of one entry, before it is known whether the entry is valid.
struct EntryProblems<'a> {
    checker: &'a mut Checker,
    problems: Vec<String>,
}

impl EntryProblems<'_> {
    /// The entry's own `region:` and `project_id:` (checked by the rules of the `settings:`
    /// keys of the same names).
    fn placement(
        &mut self,
        prefix: &EntryPath,
        region: Option<((usize, usize), &Raw)>,
        project_id: Option<((usize, usize), &Raw)>,
    ) -> Placement {
        let mut placement = Placement::default();
        if let Some((pos, value)) = region {
            match rules::region(value) {
                Ok(region) => placement.region = Some(region),
                Err(message) => self.error(pos, format!("{prefix}.region"), message),
            }
        }
        if let Some(((line, column), value)) = project_id {
            match rules::project_id(value) {
                Ok((project_id, warning)) => {
                    if let Some(warning) = warning {
                        let field = format!("{prefix}.project_id");
                        self.checker
                            .push(line, column, Severity::Warning, field, warning);
                    }
                    placement.project_id = Some(project_id);
                }
                Err(message) => self.error((line, column), format!("{prefix}.project_id"), message),
            }
        }
        placement
    }

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
            placements: std::collections::HashMap::new(),
            last_entry: (0, false),
            creates: Vec::new(),
            create_marks: Vec::new(),
            defaults: Defaults::default(),
            defaults_at: DefaultsAt::default(),
            invalid: Vec::new(),
            seen_ids: FastMap::default(),
            seen_urls: FastMap::default(),
            seen_names: FastMap::default(),
            named_images: Vec::new(),
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
        self.settle_creates();
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        Manifest {
            path: PathBuf::from(&self.file),
            settings: self.settings,
            images: self.images,
            creates: self.creates,
            defaults: self.defaults,
            placements: self.placements,
            invalid: self.invalid,
            diagnostics: self.diagnostics,
            fatal: self.fatal,
            sha256: None,
        }
    }

    /// Applies `defaults:` to the created entries (now that it is known) and checks what needs
    /// both: the tag count, and names that entries with an `image_id` share with created ones.
    fn settle_creates(&mut self) {
        if self.creates.is_empty() {
            return;
        }
        let defaults_tags_line = self.defaults_at.tags.map(|at| at.line);
        let creates = std::mem::take(&mut self.creates);
        let marks = std::mem::take(&mut self.create_marks);
        self.creates.reserve_exact(creates.len());
        let invalid_before = self.invalid.len();
        for (mut entry, mark) in creates.into_iter().zip(marks) {
            let own_tags = entry.tags.len();
            create::apply_defaults(&mut entry, &self.defaults, self.defaults_at.os_version);
            let counted = create::tag_count(own_tags, entry.tags.len(), defaults_tags_line);
            // Without tags of its own, the entry has those of `defaults:`, checked there.
            let (at, field, message) = match (counted, mark.tags_at) {
                (Err(message), Some(at)) => (
                    (at.line, at.column),
                    format!("{}.tags", EntryPath(mark.entry)),
                    message,
                ),
                _ if entry.os_version.is_none() && entry.format == ImageFormat::Iso => (
                    mark.at,
                    format!("{}.os_version", EntryPath(mark.entry)),
                    "an ISO image needs an OS version: IMS refuses to create one without it \
                     (IMG.0166); set `os_version` (or `defaults.os_version`)"
                        .to_string(),
                ),
                _ => {
                    self.creates.push(entry);
                    continue;
                }
            };
            let problem = format!("{field}: {message}");
            self.push(at.0, at.1, Severity::Error, field, message);
            self.invalid.push(InvalidEntry {
                line: entry.line,
                image_id: None,
                image_url: Some(entry.image_url.to_string()),
                name: Some(entry.name),
                problems: vec![problem],
            });
        }
        if self.invalid.len() > invalid_before {
            self.invalid.sort_by_key(|entry| entry.line);
        }
        for named in std::mem::take(&mut self.named_images) {
            let Some(name) = self
                .images
                .get(named.image as usize)
                .and_then(|image| image.name.as_deref())
            else {
                continue;
            };
            let Some(&line) = self.seen_names.get(name) else {
                continue;
            };
            let message = format!(
                "`{}` is also the name of the image imsreg creates on line {line} (this entry \
                 registers an existing image, so IMS will hold two images of that name; rename \
                 one of them unless that is what you want)",
                text::shorten(name)
            );
            self.push(
                named.line as usize,
                named.column as usize,
                Severity::Warning,
                format!("{}.name", EntryPath(named.entry as usize)),
                message,
            );
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

    /// The keys of a mapping ([`Self::keys`]), their problems reported as fatal at `field`.
    fn keys_or_fatal<'r, 'a>(
        &mut self,
        doc: &Doc,
        map: NodeId,
        pairs: &'r [(Raw<'a>, Raw<'a>)],
        field: &str,
    ) -> Vec<(&'r str, NodeId, NodeId, &'r Raw<'a>)> {
        let mut problems = Vec::new();
        let keys = Self::keys(doc, map, pairs, |pos, msg| problems.push((pos, msg)));
        for ((line, column), message) in problems {
            self.fatal_at(line, column, field.to_string(), message);
        }
        keys
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
        let hint = if place == REGION_PLACE && SETTINGS_KEYS.contains(&key) {
            format!(
                "`{shown}` is not set per region: set it under `settings:`; the keys of a region \
                 are {}",
                known.join(", ")
            )
        } else if place != "settings" && SETTINGS_KEYS.contains(&key) {
            "settings go under `settings:`".to_string()
        } else if place == "the top level" && DEFAULT_KEYS.contains(&key) {
            "values for every image imsreg creates go under `defaults:`".to_string()
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
                         optional `version:`, `settings:` and `defaults:`; see \
                         examples/demo.yaml)",
                        raw.describe()
                    ),
                );
            }
            return;
        };
        if !self.agree(doc, root, raw, &"manifest") {
            return;
        }
        let keys = self.keys_or_fatal(doc, root, pairs, "manifest");
        let mut images_seen = false;
        for (key, key_node, value_node, value) in keys {
            match key {
                "version" => {
                    if let Err(message) = rules::version(value) {
                        self.fatal_node(doc, value_node, "version", message);
                    }
                }
                "settings" => self.settings(doc, value_node, value),
                "defaults" => self.defaults(doc, value_node, value),
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
        let keys = self.keys_or_fatal(doc, node, pairs, "settings");
        for (key, key_node, value_node, value) in keys {
            let field = format!("settings.{key}");
            if let Raw::Tagged(tag, _) = value {
                self.fatal_node(doc, value_node, field, tag_message(tag));
                continue;
            }
            let s = &mut self.settings;
            let shared = QuotaKeys {
                project_id: &mut s.project_id,
                endpoint: &mut s.endpoint,
                obs_endpoint: &mut s.obs_endpoint,
                concurrency: &mut s.concurrency,
                max_active_jobs: &mut s.max_active_jobs,
                submit_rate: &mut s.submit_rate,
                query_rate: &mut s.query_rate,
            };
            let result: Result<Option<String>, String> = match shared.read(key, value) {
                Some(result) => result,
                None => match key {
                    "region" => rules::region(value).map(|v| {
                        s.region = Some(v);
                        None
                    }),
                    "preflight" => rules::boolean(value).map(|v| {
                        s.preflight = Some(v);
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
                    "regions" => {
                        self.regions(doc, value_node, value);
                        continue;
                    }
                    other => {
                        let message = Self::unknown_key_message(other, &SETTINGS_KEYS, "settings");
                        self.fatal_node(doc, key_node, field, message);
                        continue;
                    }
                },
            };
            let (line, column) = doc.index.pos(value_node);
            match result {
                Ok(None) => {}
                Ok(Some(warning)) => self.push(line, column, Severity::Warning, field, warning),
                Err(message) => self.fatal_at(line, column, field, message),
            }
        }
    }

    /// `settings.regions`: a mapping of region names, each a mapping of [`REGION_KEYS`] checked
    /// by the same rules as the `settings:` keys of the same name. Problems are fatal, as for
    /// `settings:`.
    fn regions(&mut self, doc: &Doc, node: NodeId, raw: &Raw) {
        let Some(pairs) = self.mapping(doc, node, raw, "settings.regions", "region names") else {
            return;
        };
        let keys = self.keys_or_fatal(doc, node, pairs, "settings.regions");
        for (name, key_node, value_node, value) in keys {
            let field = format!("settings.regions.{}", text::shorten(name));
            if let Err(message) = rules::region_name(name) {
                self.fatal_node(doc, key_node, field, message);
                continue;
            }
            let region = self.region(doc, value_node, value, &field);
            self.settings.regions.insert(name.to_string(), region);
        }
    }

    /// One region's settings (`field` is `settings.regions.<name>`).
    fn region(&mut self, doc: &Doc, node: NodeId, raw: &Raw, field: &str) -> RegionSettings {
        let mut region = RegionSettings::default();
        let Some(pairs) = self.mapping(doc, node, raw, field, "this region's settings") else {
            return region;
        };
        let keys = self.keys_or_fatal(doc, node, pairs, field);
        for (key, key_node, value_node, value) in keys {
            let field = format!("{field}.{key}");
            if let Raw::Tagged(tag, _) = value {
                self.fatal_node(doc, value_node, field, tag_message(tag));
                continue;
            }
            let r = &mut region;
            let shared = QuotaKeys {
                project_id: &mut r.project_id,
                endpoint: &mut r.endpoint,
                obs_endpoint: &mut r.obs_endpoint,
                concurrency: &mut r.concurrency,
                max_active_jobs: &mut r.max_active_jobs,
                submit_rate: &mut r.submit_rate,
                query_rate: &mut r.query_rate,
            };
            let result: Result<Option<String>, String> = match shared.read(key, value) {
                Some(result) => result,
                None => {
                    let message = Self::unknown_key_message(key, &REGION_KEYS, REGION_PLACE);
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
        region
    }

    /// The pairs of a mapping value under `settings:` (`None`, reported as fatal, when it is
    /// something else; `None` silently for an empty value).
    fn mapping<'r, 'a>(
        &mut self,
        doc: &Doc,
        node: NodeId,
        raw: &'r Raw<'a>,
        field: &str,
        of: &str,
    ) -> Option<&'r [(Raw<'a>, Raw<'a>)]> {
        match raw {
            Raw::Null => None,
            Raw::Map(pairs) => self
                .agree(doc, node, raw, &field)
                .then_some(pairs.as_slice()),
            Raw::Tagged(tag, _) => {
                self.fatal_node(doc, node, field.to_string(), tag_message(tag));
                None
            }
            other => {
                if self.agree(doc, node, raw, &field) {
                    self.fatal_node(
                        doc,
                        node,
                        field.to_string(),
                        format!(
                            "must be a mapping of {of}, found {} (indent `key: value` lines \
                             under it)",
                            other.describe()
                        ),
                    );
                }
                None
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
        let mut fields: [Option<(NodeId, &Raw)>; ENTRY_KEYS.len()] = [None; ENTRY_KEYS.len()];
        for (key, key_node, value_node, value) in keys {
            match ENTRY_KEYS.iter().position(|k| *k == key) {
                Some(slot) => fields[slot] = Some((value_node, value)),
                None => {
                    let message = Checker::unknown_key_message(key, &ENTRY_KEYS, "an image entry");
                    found.error(index.pos(key_node), format!("{prefix}.{key}"), message);
                }
            }
        }
        let [
            id_field,
            url_field,
            name_field,
            format_field,
            os_field,
            disk_field,
            ram_field,
            tags_field,
            region_field,
            project_field,
        ] = fields;
        let create_fields = [
            ("os_version", os_field),
            ("min_disk", disk_field),
            ("min_ram", ram_field),
            ("tags", tags_field),
        ];
        // Without an image_id, an entry with a name (or with values only created images take)
        // is an image imsreg creates.
        let creating = id_field.is_none()
            && (name_field.is_some() || create_fields.iter().any(|(_, f)| f.is_some()));

        let id_value = untagged(&mut found, doc, &prefix, "image_id", id_field);
        let url_value = untagged(&mut found, doc, &prefix, "image_url", url_field);
        let name_value = untagged(&mut found, doc, &prefix, "name", name_field);
        let format_value = untagged(&mut found, doc, &prefix, "format", format_field);
        let region_value = untagged(&mut found, doc, &prefix, "region", region_field);
        let project_value = untagged(&mut found, doc, &prefix, "project_id", project_field);
        let placement = found.placement(&prefix, region_value, project_value);
        let placed = region_field.is_some() || project_field.is_some();
        let (last_line, last_placed) = found.checker.last_entry;
        if last_line == entry_pos.0 && (placed || last_placed) {
            found.error(
                entry_pos,
                format!("{prefix}.region"),
                "starts on the same line as the entry before it, and one of them names a region \
                 or project (entries are placed by their line: write each entry on its own line)"
                    .to_string(),
            );
        }
        found.checker.last_entry = (entry_pos.0, placed);

        let image_id = match (id_value, id_field) {
            (Some((pos, value)), _) => match rules::image_id(value) {
                Ok(id) => Some((pos, id)),
                Err(message) => {
                    found.error(pos, format!("{prefix}.image_id"), message);
                    None
                }
            },
            (None, None) if !creating => {
                found.error(
                    entry_pos,
                    format!("{prefix}.image_id"),
                    "missing (add `image_id:` with the UUID of the image created in IMS, or \
                     `name:` for imsreg to create the image)"
                        .to_string(),
                );
                None
            }
            (None, _) => None,
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
        let name_rule = if creating { create::name } else { rules::name };
        let name = match (name_value, name_field) {
            (Some((pos, value)), _) => match name_rule(value) {
                Ok(name) => Some((pos, name)),
                Err(message) => {
                    found.error(pos, format!("{prefix}.name"), message);
                    None
                }
            },
            (None, None) if creating => {
                found.error(
                    entry_pos,
                    format!("{prefix}.name"),
                    "missing (an entry without `image_id:` is an image imsreg creates, and its \
                     name is how imsreg finds it again: add `name:`, or add `image_id:` if the \
                     image exists in IMS)"
                        .to_string(),
                );
                None
            }
            (None, _) => None,
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
        let own = if creating {
            found.created_values(doc, &prefix, create_fields)
        } else {
            for (key, field) in create_fields {
                if let Some((value_node, _)) = field {
                    found.error(
                        index.pos(value_node),
                        format!("{prefix}.{key}"),
                        format!(
                            "only applies to images imsreg creates, and this entry has an \
                             image_id (remove `{key}:`; or remove `image_id:` for imsreg to \
                             create the image)"
                        ),
                    );
                }
            }
            OwnValues::default()
        };
        if creating && let Some(((line, column), name)) = &name {
            match found.checker.seen_names.get(name.as_str()) {
                Some(&first_line) => found.error(
                    (*line, *column),
                    format!("{prefix}.name"),
                    format!(
                        "`{}` is also the name of the entry on line {first_line} (a created \
                         image is found again by its name, so each name is created once; \
                         rename one of the two entries)",
                        text::shorten(name)
                    ),
                ),
                None => {
                    found.checker.seen_names.insert(name.clone(), entry_pos.0);
                }
            }
        }
        let valid = found.problems.is_empty();
        if valid && (placement.region.is_some() || placement.project_id.is_some()) {
            found.checker.placements.insert(entry_pos.0, placement);
        }
        match (image_id, name, url) {
            (Some((_, image_id)), name, Some((url_pos, image_url, format))) if valid => {
                let checker = found.checker;
                let owner = UrlOwner::image(checker.images.len());
                checker.note_url(&image_url, url_pos, &prefix, owner);
                let name = name.map(|((line, column), name)| {
                    checker.named_images.push(NamedImage {
                        image: checker.images.len() as u32,
                        entry: n as u32,
                        line: line as u32,
                        column: column as u32,
                    });
                    name
                });
                checker.images.push(ImageEntry {
                    image_id,
                    image_url,
                    name,
                    format,
                    line: entry_pos.0,
                });
            }
            (None, Some((_, name)), Some((url_pos, image_url, format))) if valid && creating => {
                let checker = found.checker;
                let (os_version, os_version_at) = own.os_version.unzip();
                let owner = UrlOwner::create(checker.creates.len());
                checker.note_url(&image_url, url_pos, &prefix, owner);
                checker.creates.push(CreateEntry {
                    name,
                    image_url,
                    format,
                    os_version,
                    min_disk: own.min_disk,
                    min_ram: own.min_ram,
                    tags: own.tags,
                    line: entry_pos.0,
                    os_version_at,
                });
                checker.create_marks.push(CreateMark {
                    entry: n,
                    tags_at: own.tags_at,
                    at: entry_pos,
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

    /// Warns when a valid entry's URL is also an earlier one's (else remembers it as `owner`).
    fn note_url(
        &mut self,
        image_url: &ImageUrl,
        (line, column): (usize, usize),
        prefix: &EntryPath,
        owner: UrlOwner,
    ) {
        let hash = self.hasher.hash_one(image_url);
        let Some(&first) = self.seen_urls.get(&hash) else {
            self.seen_urls.insert(hash, owner);
            return;
        };
        if let Some((earlier_url, earlier_line)) = first.find(self)
            && earlier_url == image_url
        {
            let message = format!(
                "{image_url} is also the image_url of the entry on line {earlier_line} (both \
                 images will be registered from the same file; check the entry is not a \
                 copy-paste slip)"
            );
            self.push(
                line,
                column,
                Severity::Warning,
                format!("{prefix}.image_url"),
                message,
            );
        }
    }

    /// The top-level `defaults:`: values for every created entry. Problems here are fatal, as
    /// for `settings:`.
    fn defaults(&mut self, doc: &Doc, node: NodeId, raw: &Raw) {
        let pairs = match raw {
            Raw::Null => return,
            Raw::Map(pairs) => pairs,
            other => {
                if self.agree(doc, node, raw, &"defaults") {
                    self.fatal_node(
                        doc,
                        node,
                        "defaults",
                        format!(
                            "must be a mapping, found {} (indent `key: value` lines under \
                             `defaults:`, with any of {})",
                            other.describe(),
                            DEFAULT_KEYS.join(", ")
                        ),
                    );
                }
                return;
            }
        };
        if !self.agree(doc, node, raw, &"defaults") {
            return;
        }
        let keys = self.keys_or_fatal(doc, node, pairs, "defaults");
        for (key, key_node, value_node, value) in keys {
            let field = format!("defaults.{key}");
            if let Raw::Tagged(tag, _) = value {
                self.fatal_node(doc, value_node, field, tag_message(tag));
                continue;
            }
            let (line, column) = doc.index.pos(value_node);
            let at = Position { line, column };
            let d = &mut self.defaults;
            let result = match key {
                "os_version" => create::os_version(value).map(|v| {
                    d.os_version = Some(v);
                    self.defaults_at.os_version = Some(at);
                }),
                "min_disk" => create::min_disk(value).map(|v| d.min_disk = Some(v)),
                "min_ram" => create::min_ram(value).map(|v| d.min_ram = Some(v)),
                "tags" => {
                    if !self.agree(doc, value_node, value, &field) {
                        continue;
                    }
                    let mut problems = Vec::new();
                    let tags = tag_map(doc, value_node, value, |pos, tag, message| {
                        problems.push((pos, tag.map(String::from), message));
                    });
                    for ((line, column), tag, message) in problems {
                        let field = match tag {
                            Some(tag) => format!("{field}.{tag}"),
                            None => field.clone(),
                        };
                        self.fatal_at(line, column, field, message);
                    }
                    let counted = create::tag_count(tags.len(), tags.len(), None);
                    self.defaults.tags = tags;
                    self.defaults_at.tags = Some(at);
                    counted
                }
                other => {
                    let message = Self::unknown_key_message(other, &DEFAULT_KEYS, "defaults");
                    self.fatal_node(doc, key_node, field, message);
                    continue;
                }
            };
            if let Err(message) = result {
                self.fatal_at(line, column, field, message);
            }
        }
    }
}

/// A created entry's own values of the [`DEFAULT_KEYS`], before `defaults:`.
#[derive(Default)]
struct OwnValues {
    os_version: Option<(String, Position)>,
    min_disk: Option<u32>,
    min_ram: Option<u64>,
    tags: BTreeMap<String, String>,
    tags_at: Option<Position>,
}

impl EntryProblems<'_> {
    /// Checks the values only created entries take (`fields` in [`DEFAULT_KEYS`] order).
    fn created_values(
        &mut self,
        doc: &Doc,
        prefix: &EntryPath,
        fields: [(&str, Option<(NodeId, &Raw)>); 4],
    ) -> OwnValues {
        let mut own = OwnValues::default();
        for (key, field) in fields {
            let Some((value_node, _)) = field else {
                continue;
            };
            let Some((pos, value)) = untagged(self, doc, prefix, key, field) else {
                continue;
            };
            let at = Position {
                line: pos.0,
                column: pos.1,
            };
            let result = match key {
                "os_version" => create::os_version(value).map(|v| own.os_version = Some((v, at))),
                "min_disk" => create::min_disk(value).map(|v| own.min_disk = Some(v)),
                "min_ram" => create::min_ram(value).map(|v| own.min_ram = Some(v)),
                _ => {
                    let field = format!("{prefix}.tags");
                    if !self.checker.agree(doc, value_node, value, &field) {
                        continue;
                    }
                    let mut problems = Vec::new();
                    own.tags = tag_map(doc, value_node, value, |pos, tag, message| {
                        problems.push((pos, tag.map(String::from), message));
                    });
                    for (pos, tag, message) in problems {
                        let field = match tag {
                            Some(tag) => format!("{field}.{tag}"),
                            None => field.clone(),
                        };
                        self.error(pos, field, message);
                    }
                    own.tags_at = Some(at);
                    Ok(())
                }
            };
            if let Err(message) = result {
                self.error(pos, format!("{prefix}.{key}"), message);
            }
        }
        own
    }

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

/// The tags of a `tags:` mapping (of an entry or of `defaults:`), each key and value checked.
/// Problems go to `report` with their position and the tag's key when they concern one tag.
fn tag_map(
    doc: &Doc,
    node: NodeId,
    raw: &Raw,
    mut report: impl FnMut((usize, usize), Option<&str>, String),
) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    let pairs = match raw {
        Raw::Null => return tags,
        Raw::Map(pairs) => pairs,
        other => {
            report(
                doc.index.pos(node),
                None,
                format!(
                    "must be a mapping of tag keys to values, found {} (write one `key: value` \
                     line per tag under `tags:`, e.g. `env: prod`)",
                    other.describe()
                ),
            );
            return tags;
        }
    };
    let keys = Checker::keys(doc, node, pairs, |pos, message| report(pos, None, message));
    for (key, key_node, value_node, value) in keys {
        if let Raw::Tagged(tag, _) = value {
            report(doc.index.pos(value_node), Some(key), tag_message(tag));
            continue;
        }
        if let Err(message) = create::tag_key(key) {
            report(doc.index.pos(key_node), Some(key), message);
            continue;
        }
        match create::tag_value(value) {
            Ok(value) => {
                tags.insert(key.to_string(), value);
            }
            Err(message) => report(doc.index.pos(value_node), Some(key), message),
        }
    }
    tags
}

fn tag_message(tag: &str) -> String {
    format!(
        "YAML tags such as `!{}` are not supported (remove the tag)",
        text::shorten(tag)
    )
}

/// The per-format counts of the valid entries (both kinds), in [`ImageFormat::ALL`] order.
pub fn format_counts(manifest: &Manifest) -> Vec<(ImageFormat, usize)> {
    ImageFormat::ALL
        .into_iter()
        .map(|f| {
            let registered = manifest.images.iter().filter(|i| i.format == f).count();
            let created = manifest.creates.iter().filter(|c| c.format == f).count();
            (f, registered + created)
        })
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
