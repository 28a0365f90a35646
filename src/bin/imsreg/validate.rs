//! `imsreg validate`: offline manifest check.

use std::path::PathBuf;

use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest to check.
    pub manifest: PathBuf,
}

pub fn main(args: Args) -> u8 {
    eprintln!(
        "imsreg validate: not available yet ({})",
        args.manifest.display()
    );
    exit::USAGE
}
