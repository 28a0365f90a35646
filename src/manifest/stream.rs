//! Reading big manifests on two cores: while saphyr-parser indexes the file on this thread,
//! a worker thread has serde_yaml read the `images:` list a slice at a time, and each slice is
//! checked here as soon as both are done.
//!
//! Slicing works for the common shape only: a plain document (no anchors, aliases or tags)
//! whose `images:` is a block list (`- ` entries). Anything else is read whole afterwards, so
//! this is an optimisation, never a different meaning. Slices also keep memory low, because
//! serde_yaml holds every event of what it reads.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, Sender};

use super::check::{Checker, Doc};
use super::index::{Index, IndexError, ListSink, NodeId};
use super::raw::{self, Raw, ReadError};
use super::source::Lines;

/// Entries serde_yaml reads at a time.
const CHUNK_ITEMS: usize = 512;

/// A slice of the `images:` list that serde_yaml reads on its own (byte range in the text).
struct Chunk {
    start: usize,
    end: usize,
    first_item: usize,
}

/// The `images:` entries already checked, and the rest of the document to read.
pub(super) struct Streamed {
    pub checker: Checker,
    /// The document with the list replaced by `[]`.
    pub top_text: String,
}

/// A slice and serde_yaml's reading of it.
type ChunkRead<'t> = (Chunk, Result<Raw<'t>, ReadError>);

/// Indexes `text` and, where the document allows, reads and checks its entries on the way.
pub(super) fn index_and_read(
    text: &str,
    lines: &Lines,
    file: &str,
) -> (Result<Index, IndexError>, Option<Streamed>) {
    std::thread::scope(|scope| {
        let (jobs, job_queue) = mpsc::channel::<Chunk>();
        let (results_tx, results) = mpsc::channel::<ChunkRead>();
        let worker = std::thread::Builder::new()
            .name("imsreg-yaml".to_string())
            .spawn_scoped(scope, move || {
                for chunk in job_queue {
                    let read = raw::read(&text[chunk.start..chunk.end]);
                    if results_tx.send((chunk, read)).is_err() {
                        break;
                    }
                }
            });
        let mut stream = Stream {
            text,
            lines,
            checker: Checker::new(file),
            jobs: worker.is_ok().then_some(jobs),
            results,
            pending: VecDeque::new(),
            current: None,
            closing: None,
            first_start: None,
            range: None,
            state: State::Active,
        };
        // No worker thread (the OS refused one), or old Mac line breaks (slices are cut at
        // line starts, so keep to the common `\n` and `\r\n`): read the document whole.
        if stream.jobs.is_none() || has_lone_cr(text) {
            stream.state = State::Off;
        }
        let built = Index::build_with(text, &mut stream);
        let streamed = match &built {
            Ok(index) => stream.finish(index),
            Err(_) => None,
        };
        // Entries indexed apart for a stream that was then abandoned: index everything again.
        let built = match built {
            Ok(index) if streamed.is_none() && !index.is_complete() => Index::build(text),
            other => other,
        };
        (built, streamed)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Sending slices and checking results.
    Active,
    /// The document does not suit slicing, or a slice could not be read: it will be read
    /// whole (which also locates any error exactly).
    Off,
}

struct Stream<'t> {
    text: &'t str,
    lines: &'t Lines<'t>,
    checker: Checker,
    jobs: Option<Sender<Chunk>>,
    results: Receiver<ChunkRead<'t>>,
    /// The entries of the slices sent and not yet checked, oldest first.
    pending: VecDeque<(Index, Vec<NodeId>)>,
    /// The slice being indexed, and the one just closed (waiting for its entries).
    current: Option<Chunk>,
    closing: Option<Chunk>,
    /// Where the first slice starts.
    first_start: Option<usize>,
    /// Byte range of the whole list, once it ended.
    range: Option<(usize, usize)>,
    state: State,
}

impl Stream<'_> {
    /// Checks the slices serde_yaml has finished; with `wait`, all of them.
    fn check_ready(&mut self, wait: bool) {
        while !self.pending.is_empty() {
            let next = if wait {
                self.results.recv().ok()
            } else {
                self.results.try_recv().ok()
            };
            let Some((chunk, read)) = next else {
                if wait {
                    // The worker is gone without an answer: read the document whole.
                    self.state = State::Off;
                }
                return;
            };
            let Some((entries, items)) = self.pending.pop_front() else {
                return;
            };
            if self.state == State::Active {
                let doc = Doc { index: &entries };
                if !self.checker.chunk(&doc, &items, chunk.first_item, read) {
                    self.state = State::Off;
                }
            }
        }
    }

    fn finish(mut self, index: &Index) -> Option<Streamed> {
        if !index.is_plain() || self.range.is_none() {
            self.state = State::Off;
        }
        if self.state == State::Off {
            return None;
        }
        // No more slices: let the worker finish, then check what it read.
        self.jobs = None;
        self.check_ready(true);
        if self.state == State::Off {
            return None;
        }
        let (start, end) = self.range?;
        let root = index.root()?;
        let (key, _) = index
            .pairs(root)
            .find(|&(k, _)| index.key_text(k) == Some("images"))?;
        let indent = " ".repeat(index.pos(key).1);
        let mut top_text = String::with_capacity(start + indent.len() + 3 + self.text.len() - end);
        top_text.push_str(&self.text[..start]);
        top_text.push_str(&indent);
        top_text.push_str("[]\n");
        top_text.push_str(&self.text[end..]);
        Some(Streamed {
            checker: self.checker,
            top_text,
        })
    }
}

impl ListSink for Stream<'_> {
    fn active(&self) -> bool {
        self.state == State::Active
    }

    fn item_start(&mut self, n: usize, line: usize, col: usize) -> bool {
        if self.state != State::Active || !n.is_multiple_of(CHUNK_ITEMS) {
            return false;
        }
        let Some(start) = dash_line_start(self.lines, line, col) else {
            self.state = State::Off;
            return false;
        };
        if n == 0 {
            self.first_start = Some(start);
            let estimate = estimate_items(&self.text[start..]);
            self.checker.reserve_images(estimate);
        }
        if let Some(mut open) = self.current.take() {
            if start < open.start {
                self.state = State::Off;
                return false;
            }
            open.end = start;
            self.closing = Some(open);
        }
        self.current = Some(Chunk {
            start,
            end: start,
            first_item: n,
        });
        true
    }

    fn list_end(&mut self, line: usize) {
        if self.state != State::Active {
            return;
        }
        let Some(mut open) = self.current.take() else {
            return;
        };
        let end = self.lines.line_start(line);
        if end < open.start {
            self.state = State::Off;
            return;
        }
        open.end = end;
        self.range = Some((self.first_start.unwrap_or(open.start), end));
        self.closing = Some(open);
    }

    fn slice_done(&mut self, entries: Index, items: Vec<NodeId>) {
        if self.state != State::Active {
            return;
        }
        let Some(chunk) = self.closing.take() else {
            self.state = State::Off;
            return;
        };
        let sent = match &self.jobs {
            Some(jobs) => jobs.send(chunk).is_ok(),
            None => false,
        };
        if !sent {
            self.state = State::Off;
            return;
        }
        self.pending.push_back((entries, items));
        self.check_ready(false);
    }
}

/// The start of the line holding the `-` of a block-list item that starts at (`line`, `col`),
/// if the item has one with only indentation before it.
fn dash_line_start(lines: &Lines, line: usize, col: usize) -> Option<usize> {
    let offset = lines.offset(line, col);
    let bytes = lines.text().as_bytes();
    let before = &bytes[..offset];
    let dash = before
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\n' | b'\r'))?;
    if before[dash] != b'-' {
        return None;
    }
    let line_start = lines.line_start(lines.line_of(dash));
    bytes[line_start..dash]
        .iter()
        .all(|b| *b == b' ')
        .then_some(line_start)
}

/// An upper bound on the entries of a block list: lines whose first non-blank is `- ` or `-`
/// alone (nested lists make it an overestimate, which only costs spare capacity).
fn estimate_items(text: &str) -> usize {
    text.lines()
        .filter(|line| {
            let rest = line.trim_start_matches(' ');
            rest == "-" || rest.starts_with("- ")
        })
        .count()
}

fn has_lone_cr(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
}
