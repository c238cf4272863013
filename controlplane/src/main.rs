//! `verity`: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = verity_controlplane::cli::Cli::parse();
    verity_controlplane::cli::run(cli)
}
