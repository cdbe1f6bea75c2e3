//! `cairn`: the one binary. Parses the command line and hands it to `cairn_cli`, which sets up
//! logging and runs the command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    cairn_cli::commands::main(cairn_cli::args::Cli::parse())
}
