//! `cairn`: the one binary. Parses the command line and hands it to `cairn_cli`, which sets up
//! logging and runs the command.

use clap::Parser;

/// jemalloc rather than the system allocator (ADR 0009): under the node's many threads glibc's
/// per-thread arenas kept RSS growing in an hour's soak while the live heap stayed bounded.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    cairn_cli::commands::main(cairn_cli::args::Cli::parse())
}
