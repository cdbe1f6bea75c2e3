//! `cairn audit` and `cairn proof`: flags to the auditor's arguments, a progress bar, and
//! the printed outcome (its exit code says whether every check held).
//!
//! Owns the wiring to `crate::audit`. Must never check anything itself.

use anyhow::{Context, Result};

use crate::args::{AuditCommand, ChainFlags, ProofCommand};

fn parse_network(n: &Option<String>) -> Result<Option<cairn_spec::Network>> {
    n.as_deref()
        .map(|s| cairn_spec::Network::from_name(s).with_context(|| format!("unknown network {s:?}")))
        .transpose()
}

/// A progress bar on stderr, drawn only on a terminal.
fn epoch_progress() -> impl FnMut(u32, u32) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    move |done: u32, total: u32| {
        if !tty {
            return;
        }
        let filled = (u64::from(done) * 30 / u64::from(total.max(1))) as usize;
        eprint!(
            "\rauditing [{}{}] {done}/{total} epochs",
            "#".repeat(filled),
            " ".repeat(30 - filled.min(30))
        );
        if done >= total {
            eprintln!();
        }
    }
}

pub(super) fn run_audit(command: AuditCommand) -> Result<bool> {
    use crate::audit as a;
    let out = match command {
        AuditCommand::Receipt { target, api, network, min_depth, offline, genesis_output, json, rpc } => {
            let genesis_output = genesis_output
                .as_deref()
                .map(|o| {
                    o.parse::<bitcoin::OutPoint>()
                        .with_context(|| format!("--genesis-output {o:?} is not TXID:VOUT"))
                })
                .transpose()?;
            a::audit_receipt(
                &a::ReceiptAudit {
                    target,
                    api,
                    network: parse_network(&network)?,
                    min_depth,
                    offline,
                    genesis_output,
                    json,
                },
                &rpc.bitcoin(),
            )?
        }
        AuditCommand::Epoch { height, chain } => chain_audit(chain, height, Some(height))?,
        AuditCommand::Chain { from, to, chain } => chain_audit(chain, from, to)?,
        AuditCommand::Draws { height, api, data_dir, worker, json } => {
            let worker = worker
                .as_deref()
                .map(|w| {
                    cairn_spec::PubKey::from_hex(w).with_context(|| format!("--worker {w:?} is not a key"))
                })
                .transpose()?;
            a::audit_draws(height, api.as_deref(), data_dir.as_deref(), worker.as_ref(), json)?
        }
    };
    print!("{}", out.output);
    Ok(out.ok)
}

fn chain_audit(c: ChainFlags, from: u32, to: Option<u32>) -> Result<crate::audit::Outcome> {
    let genesis = c
        .genesis_anchor
        .as_deref()
        .map(|t| t.parse::<bitcoin::Txid>().with_context(|| format!("--genesis-anchor {t:?} is not a txid")))
        .transpose()?;
    let args = crate::audit::ChainArgs {
        api: c.api,
        data_dir: c.data_dir,
        also: c.also,
        scope: cairn_audit::chain::Scope { from, to, genesis },
        json: c.json,
    };
    Ok(crate::audit::audit_epochs(&args, &c.rpc.bitcoin(), &mut epoch_progress())?)
}

pub(super) fn run_proof(command: ProofCommand) -> Result<()> {
    use crate::audit as a;
    let msg = match command {
        ProofCommand::Bundle { target, api, depth, out, rpc } => {
            a::proof_bundle(&target, api.as_deref(), &rpc.bitcoin(), depth, &out)?
        }
        ProofCommand::Ots { target, api, calendar, out, rpc } => {
            a::proof_ots(&target, api.as_deref(), &rpc.bitcoin(), calendar.as_deref(), &out)?
        }
    };
    print!("{msg}");
    Ok(())
}
