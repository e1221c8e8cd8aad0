//! `skiff`, the command line: parses the arguments, runs the command, prints any error as
//! one sentence and exits non-zero on failure. The commands live in `cli::client`.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    cli::client::main(cli::client::Cli::parse())
}
