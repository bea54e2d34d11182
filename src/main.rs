//! The `sluice` binary: parses arguments and hands over to `sluice::cli`.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = sluice::cli::Cli::parse();
    sluice::cli::run(cli)
}
