//! `imsreg simulate`: serve the built-in IMS simulator.

use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> u8 {
    eprintln!("imsreg simulate: not available yet");
    exit::USAGE
}
