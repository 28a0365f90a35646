//! `imsreg run`: the registration job.

use std::path::PathBuf;

use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest of images to register.
    pub manifest: PathBuf,
}

pub fn main(args: Args) -> u8 {
    eprintln!(
        "imsreg run: not available yet ({})",
        args.manifest.display()
    );
    exit::USAGE
}
