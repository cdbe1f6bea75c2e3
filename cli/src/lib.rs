//! The `cairn` command line: its flags (`args`), the commands that wire them to the libraries
//! (`commands`), the devnet (`devnet`), the auditor's commands (`audit`) and `cairn decode`
//! (`inspect`), with their printing.
//!
//! Owns everything a person types and reads. Must never hold node, worker or protocol logic:
//! those live in `cairn-coordinator`, `cairn-worker`, `cairn-audit` and `cairn-spec`.
// The user interface: its output is the point, so printing is allowed here (and only here).
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod args;
pub mod audit;
pub mod commands;
pub mod devnet;
pub mod inspect;
