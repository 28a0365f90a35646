//! `imsreg status`: where a run stands, read from its state journal (no network), for an
//! operator checking a long run or a cron job.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use imsreg::ids::ImageId;
use imsreg::report::escape::printable;
use imsreg::shard::Shard;
use imsreg::state;
use imsreg::state::JournalStatus;

use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest whose default journal (`<stem>.imsreg-state.jsonl` next to it) to read.
    #[arg(required_unless_present = "state")]
    pub manifest: Option<PathBuf>,
    /// The state journal to read (as given to `imsreg run --state`).
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The run of shard K of N: its journal (`<stem>.shard-K-of-N.imsreg-state.jsonl`, unless
    /// --state names one), and only that shard's images in it.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
}

/// Whether a journaled image belongs to the shard: by its ID when the key is one (the
/// identity a manifest entry with that `image_id` has), else by the key as a name.
fn in_shard(shard: Option<Shard>, key: &str) -> bool {
    let Some(shard) = shard else {
        return true;
    };
    let identity = match ImageId::parse(key) {
        Ok(id) => imsreg::shard::identity_of_image_id(&id),
        Err(_) => imsreg::shard::identity_of_name(key),
    };
    shard.contains(&identity)
}

pub fn main(args: Args) -> u8 {
    let shard = args.shard.filter(|shard| !shard.is_whole());
    let path = match (&args.state, &args.manifest, shard) {
        (Some(state), _, _) => state.clone(),
        (None, Some(manifest), Some(shard)) => {
            state::shard_path(manifest, shard.index(), shard.total())
        }
        (None, Some(manifest), None) => state::default_path(manifest),
        (None, None, _) => return exit::USAGE,
    };
    if !path.exists() {
        eprintln!(
            "error: no state journal at {} (has a run with this manifest started yet? pass --state PATH if it was chosen explicitly)",
            path.display()
        );
        return exit::USAGE;
    }
    let mut replayed = match state::replay(&path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    // A journal shared by several shards (one --state for all) holds the others' images too.
    // An image imsreg created belongs where its entry does: by the entry's name.
    let name_in_shard = |name: &str| {
        shard.is_none_or(|shard| shard.contains(&imsreg::shard::identity_of_name(name)))
    };
    let created_for: BTreeMap<String, String> = replayed
        .creates
        .values()
        .filter_map(|c| Some((c.image_id.clone()?, c.name.clone())))
        .collect();
    replayed.creates.retain(|_, c| name_in_shard(&c.name));
    replayed.images.retain(|key, _| match created_for.get(key) {
        Some(name) => name_in_shard(name),
        None => in_shard(shard, key),
    });

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut in_flight = Vec::new();
    for (id, image) in &replayed.images {
        match image.outcome {
            Some(outcome) if outcome != JournalStatus::Pending => {
                *counts.entry(outcome.as_str()).or_default() += 1
            }
            _ => {
                *counts.entry("in_flight").or_default() += 1;
                if let Some(job) = &image.job_id {
                    in_flight.push((image.submitted_at, id.as_str(), job.as_str()));
                }
            }
        }
    }
    in_flight.sort();
    let creates = Creates::of(&replayed, args.manifest.as_deref(), &name_in_shard);
    // Only looked at, never taken: `status` must not make a starting run exit 75, nor
    // overwrite the holder, nor need write access.
    let lock = match state::lock::probe(&path) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let holder = match &lock {
        state::LockState::Held(holder) => holder.as_ref(),
        state::LockState::Free => None,
    };
    let running = lock != state::LockState::Free;

    if args.json {
        let value = serde_json::json!({
            "state": path,
            "shard": shard.map(|shard| serde_json::json!({
                "index": shard.index(), "total": shard.total(), "scheme": imsreg::shard::SCHEME,
            })),
            "run_in_progress": running,
            "holder": holder,
            "images": replayed.images.len(),
            "counts": counts,
            "in_flight": in_flight.iter().map(|(at, id, job)| serde_json::json!({
                "image_id": id, "job_id": job, "submitted_at": at,
            })).collect::<Vec<_>>(),
            "creates": {
                "created": creates.created.len(),
                "create_sent": creates.sent,
                "to_create": creates.to_create,
                "images": creates.created.iter().map(|(name, id)| serde_json::json!({
                    "name": name, "image_id": id,
                })).collect::<Vec<_>>(),
            },
            "last_update": replayed.last_update,
            "torn_tail": replayed.torn_tail,
            "unreadable_lines": replayed.unreadable_lines,
        });
        print_all(&format!("{value:#}\n"));
        return exit::OK;
    }

    let mut out = String::new();
    macro_rules! line {
        ($($arg:tt)*) => {{
            let _ = writeln!(out, $($arg)*);
        }};
    }
    line!("state journal  {}", printable(&path.display().to_string()));
    if let Some(shard) = shard {
        line!("shard          {shard} ({})", imsreg::shard::SCHEME);
    }
    line!(
        "run            {}",
        match (running, holder) {
            (true, Some(holder)) => printable(&format!("in progress ({holder})")).into_owned(),
            (true, None) => "in progress (the run lock is held)".to_string(),
            (false, _) => "not running".to_string(),
        }
    );
    line!(
        "last update    {}",
        replayed.last_update.map_or("never".to_string(), |t| t
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string())
    );
    line!("images         {}", replayed.images.len());
    for (status, count) in &counts {
        line!("  {status:<20} {count}");
    }
    if !in_flight.is_empty() {
        line!("in-flight jobs:");
        for (at, id, job) in &in_flight {
            let at = at.map_or(String::new(), |t| t.format("%H:%M:%S").to_string());
            // The journal is a file anyone may have edited: one line per job, whatever it says.
            let entry = format!("{id}  job {job}  submitted {at}");
            line!("  {}", printable(&entry));
        }
    }
    if !creates.is_empty() {
        line!("images imsreg creates (entries without image_id)");
        line!("  {:<20} {}", "created or found", creates.created.len());
        if creates.sent > 0 {
            line!(
                "  {:<20} {} (no answer recorded; the next run looks them up before creating)",
                "create sent",
                creates.sent
            );
        }
        if let Some(to_create) = creates.to_create {
            line!(
                "  {:<20} {to_create} (in the manifest, no create recorded yet)",
                "to create"
            );
        }
    }
    if replayed.torn_tail {
        line!("note: the last line was cut short by a crash; the next run ignores it");
    }
    if !replayed.unreadable_lines.is_empty() {
        line!(
            "warning: unreadable lines skipped: {:?}",
            replayed.unreadable_lines
        );
    }
    print_all(&out);
    exit::OK
}

/// Prints without panicking when stdout is closed early (`imsreg status | head`).
fn print_all(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// What the journal (and the manifest, when given) tells of the entries imsreg creates.
struct Creates {
    /// (name, image ID) of each entry whose image is known.
    created: Vec<(String, String)>,
    /// Creates sent without a recorded answer.
    sent: usize,
    /// Entries of the manifest without image_id and without any create line (`None` when no
    /// manifest was read).
    to_create: Option<usize>,
}

impl Creates {
    fn of(
        replayed: &state::Replayed,
        manifest: Option<&std::path::Path>,
        in_shard: &dyn Fn(&str) -> bool,
    ) -> Self {
        let mut created: Vec<(String, String)> = replayed
            .creates
            .values()
            .filter_map(|c| Some((c.name.clone(), c.image_id.clone()?)))
            .collect();
        created.sort();
        let sent = replayed
            .creates
            .values()
            .filter(|c| c.intent_at.is_some())
            .count();
        let to_create = manifest
            .and_then(|path| imsreg::manifest::load(path).ok())
            .map(|manifest| {
                manifest
                    .creates
                    .iter()
                    .filter(|entry| {
                        let key = imsreg::ids::identity_tag_value(&entry.name);
                        in_shard(&entry.name) && !replayed.creates.contains_key(&key)
                    })
                    .count()
            });
        Creates {
            created,
            sent,
            to_create,
        }
    }

    fn is_empty(&self) -> bool {
        self.created.is_empty() && self.sent == 0 && self.to_create.is_none_or(|n| n == 0)
    }
}
