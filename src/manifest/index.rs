//! The position index: where every node of the manifest starts, built from saphyr-parser's event
//! stream (serde_yaml gives no positions for values).
//!
//! The index is a compact tree (16 bytes a node, map keys interned) that mirrors the YAML
//! structure without expanding aliases: an alias is a node pointing at its anchor. While building
//! it, the size each alias would expand to is added up, so an alias bomb is refused here in
//! linear time, before serde_yaml ever sees the file.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScanError, Tag};

use super::fasthash::FastMap;

pub type NodeId = u32;

const NONE: u32 = u32::MAX;

/// Collections nested deeper than this are refused (a manifest needs three levels).
pub const MAX_DEPTH: usize = 64;

/// Aliases may expand the document to at most this many extra nodes beyond twice its own size.
const ALIAS_ALLOWANCE: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Scalar,
    Seq,
    Map,
    Alias,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    line: u32,
    /// 0-based character column.
    col: u32,
    /// Seq/Map: start in `children`; Scalar: interned key id (or NONE); Alias: target node.
    first: u32,
    /// Seq: item count; Map: 2 x pair count. The top two bits hold the [`Kind`], which keeps a
    /// node at 16 bytes.
    len_kind: u32,
}

const KIND_SHIFT: u32 = 30;
const LEN_MASK: u32 = (1 << KIND_SHIFT) - 1;

impl Node {
    fn kind(&self) -> Kind {
        match self.len_kind >> KIND_SHIFT {
            0 => Kind::Scalar,
            1 => Kind::Seq,
            2 => Kind::Map,
            _ => Kind::Alias,
        }
    }

    fn len(&self) -> u32 {
        self.len_kind & LEN_MASK
    }

    fn pack(kind: Kind, len: u32) -> u32 {
        let kind = match kind {
            Kind::Scalar => 0,
            Kind::Seq => 1,
            Kind::Map => 2,
            Kind::Alias => 3,
        };
        (kind << KIND_SHIFT) | (len & LEN_MASK)
    }
}

/// A problem that stops indexing (syntax error, alias bomb, second document...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Follows the list under the top-level `images:` key while the index is being built, so its
/// entries can be read and checked before the whole file is indexed. While the sink is active,
/// the entries are indexed apart, a slice at a time, and handed over: the main index then
/// holds everything but them (see [`Index::is_complete`]).
pub trait ListSink {
    /// Whether entries should still be indexed apart and handed over.
    fn active(&self) -> bool;
    /// Item `n` of the list starts at 1-based `line` and 0-based character `col`. Returns true
    /// to start a new slice at this item (the previous one is then handed to `slice_done`).
    fn item_start(&mut self, n: usize, line: usize, col: usize) -> bool;
    /// The list ended; `line` is the line of the token after it.
    fn list_end(&mut self, line: usize);
    /// The entries of the slice that just closed, indexed on their own, and their root nodes.
    fn slice_done(&mut self, entries: Index, items: Vec<NodeId>);
}

/// A sink that ignores the list: everything goes into the main index.
pub struct NoSink;

impl ListSink for NoSink {
    fn active(&self) -> bool {
        false
    }
    fn item_start(&mut self, _: usize, _: usize, _: usize) -> bool {
        false
    }
    fn list_end(&mut self, _: usize) {}
    fn slice_done(&mut self, _: Index, _: Vec<NodeId>) {}
}

/// The position tree of one YAML document.
#[derive(Debug, Default)]
pub struct Index {
    nodes: Vec<Node>,
    children: Vec<u32>,
    keys: Vec<Box<str>>,
    root: Option<NodeId>,
    /// True when the document uses no anchors, aliases or tags: its parts can then be read on
    /// their own.
    plain: bool,
    /// Entries were indexed apart and handed to a sink, so they are missing here.
    diverted: bool,
}

struct Frame {
    node: NodeId,
    is_map: bool,
    /// The node lives in the entries index (inside an item of the watched list).
    in_entries: bool,
    weight: u64,
    /// Maps: the next scalar is a key.
    expect_key: bool,
    anchor: usize,
}

struct Builder<'s> {
    index: Index,
    sink: &'s mut dyn ListSink,
    /// Frame depth of the watched `images:` list (always 1 when set), and its item count.
    watched: Option<usize>,
    watched_items: usize,
    /// Set once the watched list has been seen, so a duplicate `images:` is not followed.
    watched_done: bool,
    /// The last key attached to the root mapping was `images`.
    root_key_is_images: bool,
    /// The entries of the current slice, and their root nodes, while a sink takes them.
    entries: Index,
    entry_items: Vec<NodeId>,
    /// The current item of the watched list goes to `entries`.
    diverting: bool,
    node_total: u64,
    key_ids: FastMap<Box<str>, u32>,
    /// The same for the keys of the entries index (cleared with each slice handed over).
    entry_key_ids: FastMap<Box<str>, u32>,
    frames: Vec<Frame>,
    /// Child lists of the open collections, one per depth, reused.
    scratch: Vec<Vec<u32>>,
    /// Anchor id -> (node, expanded weight once complete).
    anchors: HashMap<usize, (NodeId, Option<u64>)>,
    /// The heaviest alias seen: (weight, line, 0-based column).
    heaviest_alias: (u64, u32, u32),
    root_weight: u64,
}

impl Index {
    /// Indexes `text`, which must hold exactly one YAML document.
    pub fn build(text: &str) -> Result<Index, IndexError> {
        Self::build_with(text, &mut NoSink)
    }

    /// Indexes `text`, telling `sink` about the `images:` list as it goes.
    pub fn build_with(text: &str, sink: &mut dyn ListSink) -> Result<Index, IndexError> {
        let mut builder = Builder {
            sink,
            watched: None,
            watched_items: 0,
            watched_done: false,
            root_key_is_images: false,
            entries: Index::default(),
            entry_items: Vec::new(),
            diverting: false,
            node_total: 0,
            index: Index {
                plain: true,
                ..Index::default()
            },
            key_ids: FastMap::default(),
            entry_key_ids: FastMap::default(),
            frames: Vec::new(),
            scratch: Vec::new(),
            anchors: HashMap::new(),
            heaviest_alias: (0, 0, 0),
            root_weight: 0,
        };
        for event in Parser::new_from_str(text) {
            let (event, span) = event.map_err(scan_error)?;
            let (line, col) = (span.start.line() as u32, span.start.col() as u32);
            builder.event(event, line, col)?;
        }
        builder.finish()
    }

    pub fn root(&self) -> Option<NodeId> {
        self.root
    }

    pub fn is_plain(&self) -> bool {
        self.plain
    }

    /// False when entries of the `images:` list were handed to a sink instead.
    pub fn is_complete(&self) -> bool {
        !self.diverted
    }

    fn node(&self, id: NodeId) -> Node {
        // Ids always come from this index; the fallback only guards against misuse.
        self.nodes.get(id as usize).copied().unwrap_or(Node {
            line: 1,
            col: 0,
            first: NONE,
            len_kind: 0,
        })
    }

    pub fn kind(&self, id: NodeId) -> Kind {
        self.node(id).kind()
    }

    /// 1-based line and column where the node starts.
    pub fn pos(&self, id: NodeId) -> (usize, usize) {
        let node = self.node(id);
        (node.line as usize, node.col as usize + 1)
    }

    /// The node itself, or the anchored node an alias points at.
    pub fn resolve(&self, id: NodeId) -> NodeId {
        let node = self.node(id);
        match node.kind() {
            Kind::Alias => node.first,
            _ => id,
        }
    }

    /// The items of a sequence (empty for anything else).
    pub fn items(&self, id: NodeId) -> &[NodeId] {
        let node = self.node(self.resolve(id));
        match node.kind() {
            Kind::Seq => self.child_slice(node),
            _ => &[],
        }
    }

    /// The (key, value) pairs of a mapping (empty for anything else).
    pub fn pairs(&self, id: NodeId) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        let node = self.node(self.resolve(id));
        let slice = match node.kind() {
            Kind::Map => self.child_slice(node),
            _ => &[],
        };
        slice.chunks_exact(2).map(|pair| (pair[0], pair[1]))
    }

    pub fn pair_count(&self, id: NodeId) -> usize {
        let node = self.node(self.resolve(id));
        match node.kind() {
            Kind::Map => node.len() as usize / 2,
            _ => 0,
        }
    }

    /// The text of a scalar mapping key.
    pub fn key_text(&self, key: NodeId) -> Option<&str> {
        let node = self.node(key);
        match node.kind() {
            Kind::Scalar if node.first != NONE => self.keys.get(node.first as usize).map(|k| &**k),
            _ => None,
        }
    }

    fn child_slice(&self, node: Node) -> &[u32] {
        let start = node.first as usize;
        self.children
            .get(start..start + node.len() as usize)
            .unwrap_or(&[])
    }

    /// The key and value nodes of `key` in a mapping.
    #[cfg(test)]
    pub fn lookup(&self, map: NodeId, key: &str) -> Option<(NodeId, NodeId)> {
        self.pairs(map)
            .find(|&(k, _)| self.key_text(k) == Some(key))
    }
}

/// Any YAML tag, standard (`!!str`, `!!binary`) or custom (`!url`), is refused where it stands:
/// a manifest needs none, and a tag changes what a value means (or hides a payload).
fn tag_error(tag: &Tag, line: u32, col: u32) -> IndexError {
    let shown = match tag.handle.as_str() {
        "tag:yaml.org,2002:" => format!("!!{}", tag.suffix),
        "!" | "!!" | "" => format!("{}{}", tag.handle, tag.suffix),
        handle => format!("{handle}{}", tag.suffix),
    };
    IndexError {
        line: line as usize,
        column: col as usize + 1,
        message: format!(
            "YAML tags such as `{}` are not supported (remove the tag; quote the value if it \
             is text)",
            super::text::shorten(&shown).escape_debug()
        ),
    }
}

fn scan_error(err: ScanError) -> IndexError {
    IndexError {
        line: err.marker().line(),
        column: err.marker().col() + 1,
        message: format!(
            "YAML syntax error: {} (fix the YAML syntax here)",
            err.info()
        ),
    }
}

impl Builder<'_> {
    fn event(&mut self, event: Event<'_>, line: u32, col: u32) -> Result<(), IndexError> {
        match event {
            Event::Scalar(value, _, anchor, tag) => {
                if let Some(tag) = tag {
                    return Err(tag_error(&tag, line, col));
                }
                if anchor != 0 {
                    self.not_plain();
                }
                let is_key = self.frames.last().is_some_and(|f| f.is_map && f.expect_key);
                let key_id = if is_key { self.intern(&value) } else { NONE };
                if is_key && self.frames.len() == 1 {
                    self.root_key_is_images = value == "images";
                }
                let id = self.push_node(line, col, Kind::Scalar, key_id)?;
                if anchor != 0 {
                    self.anchors.insert(anchor, (id, Some(1)));
                }
                self.attach(id, 1);
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                let kind = if matches!(event, Event::SequenceStart(..)) {
                    Kind::Seq
                } else {
                    Kind::Map
                };
                if let Some(tag) = tag {
                    return Err(tag_error(tag, line, col));
                }
                if anchor != 0 {
                    self.not_plain();
                }
                if self.frames.len() >= MAX_DEPTH {
                    return Err(IndexError {
                        line: line as usize,
                        column: col as usize + 1,
                        message: format!(
                            "the YAML nests deeper than {MAX_DEPTH} levels (a manifest needs \
                             three; check the brackets and indentation)"
                        ),
                    });
                }
                let id = self.push_node(line, col, kind, NONE)?;
                // After push_node, which decides whether this item is indexed apart.
                let in_entries = self.in_entries();
                if anchor != 0 {
                    self.anchors.insert(anchor, (id, None));
                }
                let depth = self.frames.len();
                if kind == Kind::Seq
                    && depth == 1
                    && self.root_key_is_images
                    && !self.watched_done
                    && self.frames[0].is_map
                {
                    self.watched = Some(depth + 1);
                    self.watched_done = true;
                }
                if self.scratch.len() <= depth {
                    self.scratch.push(Vec::new());
                }
                self.scratch[depth].clear();
                self.frames.push(Frame {
                    node: id,
                    is_map: kind == Kind::Map,
                    in_entries,
                    weight: 1,
                    expect_key: kind == Kind::Map,
                    anchor,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let ends_watched = self.watched == Some(self.frames.len());
                let Some(frame) = self.frames.pop() else {
                    return Ok(());
                };
                let depth = self.frames.len();
                let target = if frame.in_entries {
                    &mut self.entries
                } else {
                    &mut self.index
                };
                let first = target.children.len() as u32;
                target.children.extend_from_slice(&self.scratch[depth]);
                if let Some(node) = target.nodes.get_mut(frame.node as usize) {
                    node.first = first;
                    let kind = node.kind();
                    node.len_kind = Node::pack(kind, self.scratch[depth].len() as u32);
                }
                if frame.anchor != 0 {
                    self.anchors
                        .insert(frame.anchor, (frame.node, Some(frame.weight)));
                }
                if ends_watched {
                    self.watched = None;
                    self.diverting = false;
                    self.sink.list_end(line as usize);
                    self.hand_over();
                }
                self.attach(frame.node, frame.weight);
            }
            Event::Alias(anchor) => {
                self.not_plain();
                let weight = match self.anchors.get(&anchor) {
                    Some(&(_, Some(weight))) => weight,
                    Some(&(_, None)) => {
                        return Err(IndexError {
                            line: line as usize,
                            column: col as usize + 1,
                            message: "this alias refers to the node that contains it, which \
                                      would repeat forever (remove the alias)"
                                .to_string(),
                        });
                    }
                    None => {
                        return Err(IndexError {
                            line: line as usize,
                            column: col as usize + 1,
                            message: "alias to an unknown anchor (define the `&anchor` before \
                                      using `*anchor`)"
                                .to_string(),
                        });
                    }
                };
                let target = self.anchors.get(&anchor).map_or(NONE, |a| a.0);
                let id = self.push_node(line, col, Kind::Alias, target)?;
                if weight > self.heaviest_alias.0 {
                    self.heaviest_alias = (weight, line, col);
                }
                self.attach(id, weight);
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
        Ok(())
    }

    /// Anchors, aliases and tags tie parts of the document together, so entries cannot be
    /// read apart any more.
    fn not_plain(&mut self) {
        self.index.plain = false;
        self.diverting = false;
    }

    /// New nodes belong to the entries index (inside an item of the watched list).
    fn in_entries(&self) -> bool {
        self.diverting && self.watched.is_some() && self.frames.len() >= 2
    }

    /// Hands the entries indexed so far to the sink.
    fn hand_over(&mut self) {
        if !self.entry_items.is_empty() {
            let entries = std::mem::take(&mut self.entries);
            let items = std::mem::take(&mut self.entry_items);
            self.entry_key_ids.clear();
            self.sink.slice_done(entries, items);
        }
    }

    fn push_node(
        &mut self,
        line: u32,
        col: u32,
        kind: Kind,
        first: u32,
    ) -> Result<NodeId, IndexError> {
        if self.frames.is_empty() && self.index.root.is_some() {
            return Err(IndexError {
                line: line as usize,
                column: col as usize + 1,
                message: "a second YAML document starts here (a manifest is a single document; \
                          remove the `---` line and merge the documents)"
                    .to_string(),
            });
        }
        if self.watched.is_some() && self.watched == Some(self.frames.len()) {
            // An item of the watched list starts.
            let was_diverting = self.diverting;
            self.diverting = false;
            if self.index.plain && self.sink.active() {
                let n = self.watched_items;
                if self.sink.item_start(n, line as usize, col as usize) {
                    self.hand_over();
                }
                self.diverting = (n == 0 || was_diverting) && self.sink.active();
            }
        }
        let in_entries = self.in_entries();
        let target = if in_entries {
            self.index.diverted = true;
            &mut self.entries
        } else {
            &mut self.index
        };
        let id = target.nodes.len() as NodeId;
        target.nodes.push(Node {
            line,
            col,
            first,
            len_kind: Node::pack(kind, 0),
        });
        self.node_total += 1;
        if self.frames.is_empty() {
            self.index.root = Some(id);
        }
        Ok(id)
    }

    /// Adds a finished node to its parent collection.
    fn attach(&mut self, id: NodeId, weight: u64) {
        let depth = self.frames.len();
        let item_of_watched = self.watched.is_some() && self.watched == Some(depth);
        if item_of_watched {
            self.watched_items += 1;
        }
        match self.frames.last_mut() {
            Some(frame) => {
                frame.weight = frame.weight.saturating_add(weight);
                if frame.is_map {
                    frame.expect_key = !frame.expect_key;
                }
                if item_of_watched && self.diverting {
                    self.entry_items.push(id);
                } else {
                    self.scratch[depth - 1].push(id);
                }
            }
            None => self.root_weight = weight,
        }
    }

    /// The id of a mapping key in the key table of the index the key node goes to.
    fn intern(&mut self, key: &str) -> u32 {
        let (ids, index) = if self.in_entries() {
            (&mut self.entry_key_ids, &mut self.entries)
        } else {
            (&mut self.key_ids, &mut self.index)
        };
        if let Some(&id) = ids.get(key) {
            return id;
        }
        let id = index.keys.len() as u32;
        index.keys.push(key.into());
        ids.insert(key.into(), id);
        id
    }

    fn finish(self) -> Result<Index, IndexError> {
        let limit = 2 * self.node_total + ALIAS_ALLOWANCE;
        if self.root_weight > limit {
            let (weight, line, col) = self.heaviest_alias;
            let (line, column) = (line.max(1) as usize, col as usize + 1);
            return Err(IndexError {
                line,
                column,
                message: format!(
                    "the aliases in this file would expand it to {} values (an alias bomb; this \
                     alias alone is {weight}); the file is refused without expanding it (write \
                     the values out instead of repeating aliases)",
                    if self.root_weight == u64::MAX {
                        "more than 18 quintillion".to_string()
                    } else {
                        self.root_weight.to_string()
                    }
                ),
            });
        }
        Ok(self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_values_and_entries() {
        let text =
            "version: 1\nimages:\n  - image_id: a\n    image_url: \"b:c\"\n  - {image_id: y}\n";
        let index = Index::build(text).unwrap();
        let root = index.root().unwrap();
        let (_, images) = index.lookup(root, "images").unwrap();
        let items = index.items(images);
        assert_eq!(items.len(), 2);
        assert_eq!(index.pos(items[0]), (3, 5));
        assert_eq!(index.pos(items[1]), (5, 5));
        let (key, value) = index.lookup(items[0], "image_url").unwrap();
        assert_eq!(index.pos(key), (4, 5));
        assert_eq!(index.pos(value), (4, 16));
        assert_eq!(index.pair_count(items[1]), 1);
        assert!(index.is_plain());
    }

    #[test]
    fn aliases_point_at_their_anchor_without_expanding() {
        let text = "a: &x {k: v}\nb: *x\n";
        let index = Index::build(text).unwrap();
        let root = index.root().unwrap();
        let (_, b) = index.lookup(root, "b").unwrap();
        assert_eq!(index.kind(b), Kind::Alias);
        assert_eq!(index.pos(b), (2, 4));
        // An anchored node starts at its `&anchor`.
        assert_eq!(index.pos(index.resolve(b)), (1, 4));
        assert!(index.lookup(b, "k").is_some());
        assert!(!index.is_plain());
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for level in 1..10 {
            let prev = level - 1;
            let refs = vec![format!("*a{prev}"); 9].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
        }
        let err = Index::build(&text).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{}", err.message);
        assert_eq!(err.line, 10);
    }

    #[test]
    fn recursive_alias_and_second_document_are_refused() {
        // saphyr registers the anchor when the collection starts.
        let err = Index::build("a: &x [*x]\n").unwrap_err();
        assert!(err.message.contains("repeat forever"), "{}", err.message);
        let err = Index::build("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.line, 3);
    }

    #[test]
    fn yaml_tags_are_refused_with_line_and_column() {
        for (text, tag, line, column) in [
            ("a: !!binary aGVsbG8=\n", "`!!binary`", 1, 4),
            ("a:\n  b: !!str 12\n", "`!!str`", 2, 6),
            ("- !url b01:x.raw\n", "`!url`", 1, 3),
            ("!!map {a: 1}\n", "`!!map`", 1, 1),
            ("a: !<tag:example.com,2000:x> 1\n", "tag:example.com", 1, 4),
            ("!!str k: v\n", "`!!str`", 1, 1),
        ] {
            let err = Index::build(text).unwrap_err();
            assert!(err.message.contains(tag), "{text}: {}", err.message);
            assert_eq!((err.line, err.column), (line, column), "{text}");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(200);
        let err = Index::build(&text).unwrap_err();
        assert!(err.message.contains("nests deeper"), "{}", err.message);
    }
}
