//! The auditor's commands behind the thin binary: `cairn audit receipt|epoch|chain` and
//! `cairn proof bundle|ots`. Each returns what to print and whether everything verified, so
//! the binary only prints and sets the exit code.
//!
//! Owns choosing the source (a coordinator's or follower's API, or a proof file), the
//! auditor's Bitcoin Core, and the output forms (✓/✗ lines or JSON). Must never soften a
//! failure: any failed check makes the command fail, naming the step.

use std::path::{Path, PathBuf};

use cairn_anchor::{BitcoinCoreRpc, ChainBackend, RpcAuth, RpcConfig};
use cairn_audit::chain::{audit_chain, Scope};
use cairn_audit::headers::HeaderRules;
use cairn_audit::receipt::{assemble, ProofFile};
use cairn_audit::verify::{assemble_bundle, verify_bundle_with, verify_receipt, verify_receipt_pinned};
use cairn_audit::{render, ApiSource, Source};
use cairn_spec::{Encode, Hash32, Network, ReceiptProof};
use serde_json::json;
use thiserror::Error;

/// Why an audit command could not run (a failed check is not an error: it is a verdict).
#[derive(Debug, Error)]
#[error("{0}")]
pub struct CliError(pub String);

fn err(e: impl std::fmt::Display) -> CliError {
    CliError(e.to_string())
}

/// How to reach the auditor's own Bitcoin Core.
#[derive(Clone, Debug, Default)]
pub struct BitcoinArgs {
    /// RPC URL.
    pub rpc_url: Option<String>,
    /// Cookie file.
    pub rpc_cookie: Option<PathBuf>,
    /// Or user and password.
    pub rpc_user: Option<String>,
    /// Password.
    pub rpc_password: Option<String>,
}

impl BitcoinArgs {
    /// A client, when a URL was given.
    pub fn client(&self) -> Result<Option<BitcoinCoreRpc>, CliError> {
        let Some(url) = &self.rpc_url else { return Ok(None) };
        let auth = RpcAuth::from_parts(
            self.rpc_cookie.as_deref(),
            self.rpc_user.as_deref(),
            self.rpc_password.as_deref(),
        )
        .ok_or_else(|| CliError("--rpc-url needs --rpc-cookie, or --rpc-user and --rpc-password".into()))?;
        BitcoinCoreRpc::new(RpcConfig::new(url.clone(), auth)).map(Some).map_err(err)
    }
}

/// What a command produced.
#[derive(Debug)]
pub struct Outcome {
    /// Text to print on stdout.
    pub output: String,
    /// True when everything verified.
    pub ok: bool,
}

/// Largest proof file read: a bundle's most headers (8 MB) as hex JSON, and its proof.
const MAX_PROOF_FILE: u64 = 32 << 20;

fn read_file(path: &Path) -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| CliError(format!("opening {}: {e}", path.display())))?;
    let mut buf = Vec::new();
    f.take(MAX_PROOF_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CliError(format!("reading {}: {e}", path.display())))?;
    if buf.len() as u64 > MAX_PROOF_FILE {
        return Err(CliError(format!("{} is larger than {MAX_PROOF_FILE} bytes", path.display())));
    }
    Ok(buf)
}

/// A receipt named on the command line: a proof file, or a receipt id fetched from an API.
pub fn load_proof(
    target: &str,
    api: Option<&str>,
    backend: Option<&dyn ChainBackend>,
    network: Option<Network>,
) -> Result<ProofFile, CliError> {
    if let Ok(id) = Hash32::from_hex(target) {
        if !Path::new(target).exists() {
            let api = api.ok_or_else(|| {
                CliError("a receipt id needs --api (a coordinator's or follower's URL)".into())
            })?;
            let backend = backend.ok_or_else(|| {
                CliError(
                    "assembling a proof from an id needs your Bitcoin Core (--rpc-url); or pass a proof file"
                        .into(),
                )
            })?;
            let source = ApiSource::new(api);
            let network = match network {
                Some(n) => n,
                None => source.receipt(&id).map_err(err)?.receipt.body.network,
            };
            return assemble(&source, &id, backend, network).map(ProofFile::Proof).map_err(err);
        }
    }
    ProofFile::parse(&read_file(Path::new(target))?).map_err(err)
}

/// Parameters of `cairn audit receipt`.
#[derive(Clone, Debug, Default)]
pub struct ReceiptAudit {
    /// Proof file or receipt id.
    pub target: String,
    /// API to fetch an id from.
    pub api: Option<String>,
    /// The network the auditor expects (default: the proof's, said so in the output).
    pub network: Option<Network>,
    /// Confirmations required.
    pub min_depth: u32,
    /// Verify a bundle with no node.
    pub offline: bool,
    /// The genesis output of the anchor chain the auditor expects.
    pub genesis_output: Option<bitcoin::OutPoint>,
    /// JSON output.
    pub json: bool,
}

/// `cairn audit receipt`.
pub fn audit_receipt(a: &ReceiptAudit, bitcoin: &BitcoinArgs) -> Result<Outcome, CliError> {
    let client = if a.offline { None } else { bitcoin.client()? };
    if !a.offline && client.is_none() {
        return Err(CliError(
            "online verification needs your Bitcoin Core (--rpc-url ...); or use --offline with a bundle"
                .into(),
        ));
    }
    let backend = client.as_ref().map(|c| c as &dyn ChainBackend);
    let file = load_proof(&a.target, a.api.as_deref(), backend, a.network)?;
    let proof = file.proof();
    let (network, assumed) = match a.network {
        Some(n) => (n, false),
        None => (proof.network, true),
    };
    let (mode, report) = match (&file, backend) {
        (ProofFile::Bundle(b), _) if a.offline => (
            "offline bundle",
            verify_bundle_with(b, network, &HeaderRules::of(network), a.min_depth, a.genesis_output),
        ),
        (ProofFile::Proof(_), None) => {
            return Err(CliError(
                "--offline needs a proof bundle (`cairn proof bundle`), not a bare proof".into(),
            ))
        }
        (_, Some(be)) => {
            // What the node given says it is: the devnet's embedded chain is not Bitcoin Core,
            // and the verdict must not say it was checked against Bitcoin.
            let mode = if be.chain_info().is_ok_and(|i| i.embedded) {
                "the embedded regtest chain (NOT Bitcoin Core)"
            } else {
                "Bitcoin Core"
            };
            (mode, verify_receipt_pinned(proof, be, network, a.min_depth, a.genesis_output))
        }
        (_, None) => return Err(CliError("no Bitcoin Core given".into())),
    };
    let receipt = proof.receipt.id();
    if a.json {
        let v = json!({
            "receipt": receipt,
            "network": network,
            "network_from_proof": assumed,
            "against": mode,
            "min_depth": a.min_depth,
            "ok": report.ok(),
            "failed_step": report.first_failure().map(|c| c.name),
            "checks": report.checks,
        });
        return Ok(Outcome { output: serde_json::to_string_pretty(&v).map_err(err)?, ok: report.ok() });
    }
    let mut out = format!(
        "receipt {receipt}\nnetwork {network}{}; verified against {mode}; {} confirmations required\n",
        if assumed { " (from the proof; pass --network to require one)" } else { "" },
        a.min_depth
    );
    out.push_str(&render::checks(&report));
    out.push_str(&render::verdict(&report));
    out.push('\n');
    Ok(Outcome { output: out, ok: report.ok() })
}

/// Parameters of `cairn audit epoch` and `cairn audit chain`.
#[derive(Clone, Debug, Default)]
pub struct ChainArgs {
    /// Coordinator or follower API.
    pub api: Option<String>,
    /// Or a node's data directory.
    pub data_dir: Option<PathBuf>,
    /// More APIs whose headers are compared for equivocation.
    pub also: Vec<String>,
    /// What to audit.
    pub scope: Scope,
    /// JSON output.
    pub json: bool,
}

/// Where sidechain data comes from: an API, or a node's data directory opened read-only (the
/// anchors it names are its anchor records that are confirmed).
pub fn open_source(api: Option<&str>, data_dir: Option<&Path>) -> Result<Box<dyn Source>, CliError> {
    match (api, data_dir) {
        (Some(a), None) => Ok(Box::new(ApiSource::new(a))),
        (None, Some(dir)) => {
            use cairn_anchor::AnchorStore;
            let db = dir.join("db");
            let store: std::sync::Arc<dyn cairn_coordinator::store::KvStore> = std::sync::Arc::new(
                cairn_coordinator::store::RocksStore::open_read_only(&db)
                    .map_err(|e| CliError(format!("opening {} read-only: {e}", db.display())))?,
            );
            let mut anchors: Vec<cairn_audit::AnchorClaim> =
                cairn_coordinator::anchor_store::KvAnchorStore::new(store.clone())
                    .load()
                    .map_err(err)?
                    .map(|(_, records)| records)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|r| match r.status {
                        cairn_anchor::AnchorStatus::Confirmed { height, .. } => {
                            Some(cairn_audit::AnchorClaim { txid: r.txid, epoch: r.payload.height, height })
                        }
                        _ => None,
                    })
                    .collect();
            anchors.sort_by_key(|a| (a.height, a.epoch));
            Ok(Box::new(cairn_coordinator::audit_source::StoreSource {
                store,
                anchors,
                name: format!("database {}", db.display()),
                trees: Default::default(),
            }))
        }
        _ => Err(CliError("give one source: --api URL or --data-dir DIR".into())),
    }
}

/// `cairn audit epoch` / `cairn audit chain`. `progress` is called after each epoch.
pub fn audit_epochs(
    a: &ChainArgs,
    bitcoin: &BitcoinArgs,
    progress: &mut dyn FnMut(u32, u32),
) -> Result<Outcome, CliError> {
    let client = bitcoin.client()?;
    let source = open_source(a.api.as_deref(), a.data_dir.as_deref())?;
    let others: Vec<ApiSource> = a.also.iter().map(|u| ApiSource::new(u)).collect();
    let other_refs: Vec<&dyn Source> = others.iter().map(|o| o as &dyn Source).collect();
    let audit = audit_chain(
        source.as_ref(),
        &other_refs,
        client.as_ref().map(|c| c as &dyn ChainBackend),
        &a.scope,
        progress,
    )
    .map_err(err)?;
    let ok = audit.ok();
    let output = if a.json {
        serde_json::to_string_pretty(&json!({
            "ok": ok,
            "audit": audit,
            "equivocation_evidence": audit.equivocations.iter().map(|q| json!({
                "height": q.height,
                "header_a": hex::encode(q.first.to_bytes()),
                "header_b": q.second.as_ref().map(|b| hex::encode(b.to_bytes())),
                "committed": q.committed,
            })).collect::<Vec<_>>(),
        }))
        .map_err(err)?
    } else {
        let mut s = render::chain(&audit);
        if client.is_none() {
            s.push_str("note: no Bitcoin Core given (--rpc-url): anchors were not checked\n");
        }
        s
    };
    Ok(Outcome { output, ok })
}

/// `cairn audit draws`: the draws of epoch `height`'s receipts, recomputed.
pub fn audit_draws(
    height: u32,
    api: Option<&str>,
    data_dir: Option<&Path>,
    worker: Option<&cairn_spec::PubKey>,
    json: bool,
) -> Result<Outcome, CliError> {
    let source = open_source(api, data_dir)?;
    let audit = cairn_audit::draws::audit_draws(source.as_ref(), height).map_err(err)?;
    let ok = audit.report.ok();
    let output = if json {
        serde_json::to_string_pretty(&json!({ "ok": ok, "audit": audit, "passed_over": audit.passed_over() }))
            .map_err(err)?
    } else {
        format!("source: {}\n{}", source.describe(), render::draws(&audit, worker))
    };
    Ok(Outcome { output, ok })
}

/// `cairn proof bundle`: writes a bundle with `depth` confirmations to `out`.
pub fn proof_bundle(
    target: &str,
    api: Option<&str>,
    bitcoin: &BitcoinArgs,
    depth: u32,
    out: &Path,
) -> Result<String, CliError> {
    let client = bitcoin
        .client()?
        .ok_or_else(|| CliError("a bundle is built from Bitcoin Core: give --rpc-url".into()))?;
    let proof = load_proof(target, api, Some(&client), None)?.proof().clone();
    let report = verify_receipt(&proof, &client, proof.network, depth);
    if let Some(c) = report.first_failure() {
        return Err(CliError(format!(
            "the proof does not verify against your node (step `{}`: {}); no bundle written",
            c.name, c.detail
        )));
    }
    let bundle = assemble_bundle(proof, &client, depth).map_err(err)?;
    write_atomic(out, &bundle.to_bytes())?;
    Ok(format!(
        "wrote {} ({} confirmations, {} bytes)\n",
        out.display(),
        bundle.depth(),
        bundle.to_bytes().len()
    ))
}

/// `cairn proof ots`: writes `<out>` (the stamped file: its SHA-256 is the receipt id) and
/// `<out>.ots`. With the receipt's anchor confirmed the timestamp ends at that block; before,
/// with `calendar` given, in a pending attestation `ots upgrade` completes from that calendar.
pub fn proof_ots(
    target: &str,
    api: Option<&str>,
    bitcoin: &BitcoinArgs,
    calendar: Option<&str>,
    out: &Path,
) -> Result<String, CliError> {
    use cairn_spec::ots::{receipt_timestamp, stamped_receipt_file, Attestation, LinearTimestamp};
    let client = bitcoin.client()?;
    let backend = client.as_ref().map(|c| c as &dyn ChainBackend);
    let loaded = load_proof(target, api, backend, None);
    let (receipt, timestamp, note) = match loaded {
        Ok(file) => {
            let p: &ReceiptProof = file.proof();
            let t = receipt_timestamp(p).map_err(err)?;
            (p.receipt.clone(), t, format!("attested by Bitcoin block {}", p.block_height))
        }
        Err(e) => {
            let (Some(cal), Some(api), Ok(id)) = (calendar, api, Hash32::from_hex(target)) else {
                return Err(e);
            };
            let located = ApiSource::new(api).receipt(&id).map_err(err)?;
            if !located.receipt.verify() {
                return Err(CliError("the API served a receipt whose signature does not verify".into()));
            }
            let t =
                LinearTimestamp { ops: vec![], attestation: Attestation::Pending { uri: cal.to_owned() } };
            t.check(&id.0).map_err(err)?;
            (located.receipt, t, format!("pending ({e}); `ots upgrade` will ask {cal}"))
        }
    };
    let id = receipt.id();
    let stamped = stamped_receipt_file(&receipt);
    let ots_path = PathBuf::from(format!("{}.ots", out.display()));
    write_atomic(out, &stamped)?;
    write_atomic(&ots_path, &timestamp.detached_file(&id.0))?;
    Ok(format!(
        "wrote {} (the stamped receipt; SHA-256 = receipt id {id}) and {}: {note}\n",
        out.display(),
        ots_path.display()
    ))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    std::fs::write(&tmp, bytes).map_err(|e| CliError(format!("writing {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| CliError(format!("writing {}: {e}", path.display())))
}
