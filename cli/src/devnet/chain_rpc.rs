//! The embedded regtest chain behind a Bitcoin Core–shaped JSON-RPC endpoint on loopback, for
//! the devnet when no `bitcoind` is found: the coordinator, the auditor commands and workers'
//! status checks then talk to it exactly as they talk to Bitcoin Core (cookie auth, the same
//! methods, the same error codes), so nothing in them knows it is not a real node.
//!
//! Owns the translation from JSON-RPC calls to [`ScriptedBackend`]. It is NOT Bitcoin Core:
//! nothing it accepts is relayed or validated by Bitcoin's real rules beyond what the scripted
//! chain checks, and whatever starts it must say so. It must never listen beyond 127.0.0.1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Amount, BlockHash, FeeRate, OutPoint, Transaction, Txid};
use cairn_anchor::scripted::ScriptedBackend;
use cairn_anchor::{BroadcastError, ChainBackend, ChainError};
use serde_json::{json, Value};

/// Largest request body (a few transactions).
const MAX_BODY: usize = 4 << 20;
/// Most blocks one `generatetoaddress` mines.
const MAX_GENERATE: u64 = 1000;

/// A running endpoint.
#[derive(Debug)]
pub struct EmbeddedRpc {
    /// Where it listens (`http://127.0.0.1:<port>`).
    pub url: String,
    /// Its cookie file (`__cookie__:<hex>`, mode 0600), as Bitcoin Core writes one.
    pub cookie: PathBuf,
    /// The chain, for the devnet's own mining.
    pub chain: ScriptedBackend,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for EmbeddedRpc {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

#[derive(Clone)]
struct RpcState {
    chain: ScriptedBackend,
    auth: std::sync::Arc<String>,
}

/// An RPC error as Bitcoin Core reports it.
struct RpcError(i64, String);

fn chain_err(e: ChainError) -> RpcError {
    RpcError(-1, e.to_string())
}

impl EmbeddedRpc {
    /// Serves `chain` on a free loopback port; the cookie goes to `dir/.cookie`.
    pub async fn start(chain: ScriptedBackend, dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| std::io::Error::other(e.to_string()))?;
        let cred = format!("__cookie__:{}", hex::encode(secret));
        let cookie = dir.join(".cookie");
        write_private(&cookie, cred.as_bytes())?;
        let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(&cred));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let state = RpcState { chain: chain.clone(), auth: std::sync::Arc::new(auth) };
        let app =
            Router::new().route("/", post(handle)).layer(DefaultBodyLimit::max(MAX_BODY)).with_state(state);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await;
        });
        Ok(EmbeddedRpc { url: format!("http://{addr}"), cookie, chain, stop: Some(stop_tx) })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(bytes)
}

async fn handle(State(s): State<RpcState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let given = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !cairn_coordinator::api::constant_time_eq(given.as_bytes(), s.auth.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, "").into_response();
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return reply(Value::Null, Err(RpcError(-32700, "Parse error".into())));
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let method = req.get("method").and_then(Value::as_str).unwrap_or("");
    let params = req.get("params").cloned().unwrap_or(json!([]));
    let params = params.as_array().cloned().unwrap_or_default();
    reply(id, call(&s.chain, method, &params))
}

fn reply(id: Value, r: Result<Value, RpcError>) -> Response {
    match r {
        Ok(v) => Json(json!({ "result": v, "error": null, "id": id })).into_response(),
        Err(RpcError(code, message)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "result": null, "error": { "code": code, "message": message }, "id": id })),
        )
            .into_response(),
    }
}

fn param(p: &[Value], i: usize) -> Result<&Value, RpcError> {
    p.get(i).ok_or_else(|| RpcError(-1, format!("missing parameter {i}")))
}

fn str_param(p: &[Value], i: usize) -> Result<&str, RpcError> {
    param(p, i)?.as_str().ok_or_else(|| RpcError(-8, format!("parameter {i} must be a string")))
}

fn hash_param(p: &[Value], i: usize) -> Result<BlockHash, RpcError> {
    str_param(p, i)?.parse().map_err(|_| RpcError(-8, "blockhash must be of length 64 (hex)".into()))
}

fn txid_param(p: &[Value], i: usize) -> Result<Txid, RpcError> {
    str_param(p, i)?.parse().map_err(|_| RpcError(-8, "txid must be of length 64 (hex)".into()))
}

fn tx_param(p: &[Value], i: usize) -> Result<Transaction, RpcError> {
    deserialize_hex(str_param(p, i)?).map_err(|_| RpcError(-22, "TX decode failed".into()))
}

/// A fee rate in BTC per 1000 virtual bytes, as Core reports it.
fn btc_per_kvb(rate: FeeRate) -> f64 {
    Amount::from_sat(rate.to_sat_per_kwu().saturating_mul(4)).to_btc()
}

/// Core's reject reasons, worded so a client sorting them by Core's strings sorts them right.
fn reject_reason(e: &BroadcastError) -> String {
    match e {
        BroadcastError::InputsMissing(m) => format!("bad-txns-inputs-missingorspent ({m})"),
        BroadcastError::FeeTooLow(m) if m.contains("fee") => m.clone(),
        BroadcastError::FeeTooLow(m) => format!("insufficient fee ({m})"),
        BroadcastError::Rejected(m) => m.clone(),
        other => other.to_string(),
    }
}

/// A block header as Core's verbose answers show it; `confirmations` is -1 off the best chain.
fn header_json(
    chain: &ScriptedBackend,
    hash: &BlockHash,
    h: &bitcoin::block::Header,
) -> Result<Value, RpcError> {
    let height = chain.block_height(hash).map_err(chain_err)?;
    let tip = chain.chain_info().map_err(chain_err)?.tip_height;
    Ok(json!({
        "hash": hash.to_string(),
        "height": height,
        "confirmations": height.map_or(-1, |h| i64::from(tip) - i64::from(h) + 1),
        "previousblockhash": h.prev_blockhash.to_string(),
        "merkleroot": h.merkle_root.to_string(),
        "time": h.time,
        "bits": format!("{:08x}", h.bits.to_consensus()),
        "nonce": h.nonce,
    }))
}

fn call(chain: &ScriptedBackend, method: &str, p: &[Value]) -> Result<Value, RpcError> {
    match method {
        "getblockchaininfo" => {
            let i = chain.chain_info().map_err(chain_err)?;
            Ok(json!({
                "chain": i.chain,
                "blocks": i.tip_height,
                "headers": i.tip_height,
                "bestblockhash": i.tip_hash.to_string(),
                "initialblockdownload": false,
                "verificationprogress": 1.0,
                "warnings": cairn_anchor::EMBEDDED_CHAIN_WARNING,
            }))
        }
        "scantxoutset" => {
            // Only what Cairn asks: `start` with one `raw(<script hex>)` descriptor.
            if param(p, 0)?.as_str() != Some("start") {
                return Err(RpcError(-8, "only the start action is served".into()));
            }
            let desc = param(p, 1)?.get(0).and_then(Value::as_str).unwrap_or_default();
            let script = desc
                .strip_prefix("raw(")
                .and_then(|d| d.strip_suffix(')'))
                .and_then(|h| hex::decode(h).ok())
                .ok_or_else(|| RpcError(-5, "only a raw(<hex>) descriptor is served".into()))?;
            let scan = chain.scan_outputs(&bitcoin::ScriptBuf::from_bytes(script)).map_err(chain_err)?;
            let unspents: Vec<Value> = scan
                .outputs
                .iter()
                .map(|o| {
                    json!({
                        "txid": o.outpoint.txid.to_string(),
                        "vout": o.outpoint.vout,
                        "scriptPubKey": hex::encode(o.script_pubkey.as_bytes()),
                        "amount": o.value.to_btc(),
                        "coinbase": o.coinbase,
                        "height": o.height,
                    })
                })
                .collect();
            Ok(json!({
                "success": true,
                "txouts": unspents.len(),
                "height": scan.height,
                "bestblock": scan.block.to_string(),
                "unspents": unspents,
            }))
        }
        "getblockcount" => Ok(json!(chain.chain_info().map_err(chain_err)?.tip_height)),
        "getnetworkinfo" => Ok(json!({
            "version": 0,
            "subversion": "/cairn-embedded-regtest/",
            "relayfee": btc_per_kvb(chain.relay_fee().map_err(chain_err)?),
            "warnings": cairn_anchor::EMBEDDED_CHAIN_WARNING,
        })),
        "getmempoolinfo" => Ok(json!({
            "size": chain.mempool().len(),
            "mempoolminfee": btc_per_kvb(chain.relay_fee().map_err(chain_err)?),
        })),
        "getblockhash" => {
            let h = param(p, 0)?.as_u64().ok_or_else(|| RpcError(-8, "height must be an integer".into()))?;
            let h = u32::try_from(h).map_err(|_| RpcError(-8, "Block height out of range".into()))?;
            match chain.block_hash(h).map_err(chain_err)? {
                Some(b) => Ok(json!(b.to_string())),
                None => Err(RpcError(-8, "Block height out of range".into())),
            }
        }
        "getblock" => {
            let hash = hash_param(p, 0)?;
            let verbosity = p.get(1).and_then(Value::as_u64).unwrap_or(1);
            let block = chain.block(&hash).map_err(|_| RpcError(-5, "Block not found".into()))?;
            if verbosity == 0 {
                return Ok(json!(serialize_hex(&block)));
            }
            let mut v = header_json(chain, &hash, &block.header)?;
            v["tx"] = json!(block.txdata.iter().map(|t| t.compute_txid().to_string()).collect::<Vec<_>>());
            Ok(v)
        }
        "getblockheader" => {
            let hash = hash_param(p, 0)?;
            let verbose = p.get(1).and_then(Value::as_bool).unwrap_or(true);
            let block = chain.block(&hash).map_err(|_| RpcError(-5, "Block not found".into()))?;
            if !verbose {
                return Ok(json!(serialize_hex(&block.header)));
            }
            header_json(chain, &hash, &block.header)
        }
        "getrawtransaction" => {
            let txid = txid_param(p, 0)?;
            let block = match p.get(2) {
                Some(Value::String(_)) => Some(hash_param(p, 2)?),
                _ => None,
            };
            match chain.transaction(&txid, block.as_ref()).map_err(chain_err)? {
                Some(tx) => Ok(json!(serialize_hex(&tx))),
                None => Err(RpcError(-5, "No such mempool or blockchain transaction".into())),
            }
        }
        "gettxout" => {
            let txid = txid_param(p, 0)?;
            let vout = param(p, 1)?.as_u64().and_then(|v| u32::try_from(v).ok());
            let vout = vout.ok_or_else(|| RpcError(-8, "n must be an integer".into()))?;
            let mempool = p.get(2).and_then(Value::as_bool).unwrap_or(true);
            let tip = chain.chain_info().map_err(chain_err)?;
            Ok(match chain.utxo(&OutPoint { txid, vout }, mempool).map_err(chain_err)? {
                None => Value::Null,
                Some(u) => json!({
                    "bestblock": tip.tip_hash.to_string(),
                    "confirmations": u.confirmations,
                    "value": u.value.to_btc(),
                    "scriptPubKey": { "hex": hex::encode(u.script_pubkey.as_bytes()) },
                    "coinbase": u.coinbase,
                }),
            })
        }
        "estimatesmartfee" => {
            let target = p.first().and_then(Value::as_u64).unwrap_or(6);
            let t = u16::try_from(target).unwrap_or(u16::MAX);
            Ok(match chain.estimate_fee(t).map_err(chain_err)? {
                Some(rate) => json!({ "feerate": btc_per_kvb(rate), "blocks": target }),
                None => json!({ "errors": ["Insufficient data or no feerate found"], "blocks": target }),
            })
        }
        "getmempoolentry" => {
            let txid = txid_param(p, 0)?;
            if chain.in_mempool(&txid).map_err(chain_err)? {
                Ok(json!({}))
            } else {
                Err(RpcError(-5, "Transaction not in mempool".into()))
            }
        }
        "testmempoolaccept" => {
            let raw =
                param(p, 0)?.as_array().ok_or_else(|| RpcError(-8, "rawtxs must be an array".into()))?;
            let mut out = Vec::new();
            for (i, _) in raw.iter().enumerate() {
                let tx = tx_param(raw, i)?;
                let txid = tx.compute_txid().to_string();
                out.push(match chain.test_accept(&tx) {
                    Ok(()) => json!({ "txid": txid, "allowed": true }),
                    Err(e) => json!({ "txid": txid, "allowed": false, "reject-reason": reject_reason(&e) }),
                });
            }
            Ok(Value::Array(out))
        }
        "sendrawtransaction" => {
            let tx = tx_param(p, 0)?;
            match chain.broadcast(&tx) {
                Ok(txid) => Ok(json!(txid.to_string())),
                Err(BroadcastError::Chain(e)) => Err(chain_err(e)),
                Err(e) => Err(RpcError(-26, reject_reason(&e))),
            }
        }
        "generatetoaddress" => {
            let n = param(p, 0)?.as_u64().ok_or_else(|| RpcError(-8, "nblocks must be an integer".into()))?;
            if n > MAX_GENERATE {
                return Err(RpcError(-8, format!("at most {MAX_GENERATE} blocks at once")));
            }
            let addr: bitcoin::Address<bitcoin::address::NetworkUnchecked> =
                str_param(p, 1)?.parse().map_err(|_| RpcError(-5, "Error: Invalid address".into()))?;
            let addr = addr
                .require_network(bitcoin::Network::Regtest)
                .map_err(|_| RpcError(-5, "Error: Invalid address (not regtest)".into()))?;
            chain.chain_info().map_err(chain_err)?;
            let before = chain.height();
            chain.mine_to(&addr.script_pubkey(), n as u32);
            let hashes: Result<Vec<Value>, RpcError> = (before + 1..=chain.height())
                .map(|h| {
                    chain
                        .block_hash(h)
                        .map_err(chain_err)?
                        .map(|b| json!(b.to_string()))
                        .ok_or_else(|| RpcError(-1, "race".into()))
                })
                .collect();
            Ok(Value::Array(hashes?))
        }
        "invalidateblock" => {
            let hash = hash_param(p, 0)?;
            let Some(h) = chain.block_height(&hash).map_err(chain_err)? else {
                return Err(RpcError(-5, "Block not found".into()));
            };
            if h == 0 {
                return Err(RpcError(-8, "cannot invalidate the genesis block".into()));
            }
            chain.disconnect(chain.height() - h + 1);
            Ok(Value::Null)
        }
        "uptime" => Ok(json!(0)),
        "stop" => Ok(json!("embedded chain keeps running while the devnet does")),
        other => Err(RpcError(-32601, format!("Method not found: {other} (embedded regtest chain)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash as _;
    use cairn_anchor::{BitcoinCoreRpc, RpcAuth, RpcConfig};

    /// The Bitcoin Core client reads the embedded chain as it reads Core: tip, blocks,
    /// headers, coins, fee answers, mempool, broadcast refusals and invalidation.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_core_client_talks_to_the_embedded_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rpc = EmbeddedRpc::start(ScriptedBackend::new(), dir.path()).await.expect("start");
        let (url, cookie) = (rpc.url.clone(), rpc.cookie.clone());
        tokio::task::spawn_blocking(move || {
            let c =
                BitcoinCoreRpc::new(RpcConfig::new(url.clone(), RpcAuth::Cookie(cookie))).expect("client");
            let info = c.check_network(cairn_spec::Network::Regtest).expect("regtest");
            assert_eq!(info.tip_height, 0);
            let key = cairn_spec::SigningKey::from_secret_bytes([7; 32]).expect("key");
            let addr = cairn_anchor::anchor_address(&key.public(), cairn_spec::Network::Regtest);
            let mined = c.raw_call("generatetoaddress", json!([3, addr.to_string()])).expect("mine");
            assert_eq!(mined.as_array().map(Vec::len), Some(3));
            let tip = c.chain_info().expect("tip");
            assert_eq!(tip.tip_height, 3);
            let b1 = c.block_hash(1).expect("hash").expect("block 1");
            let block = c.block(&b1).expect("block");
            assert_eq!(c.block_header(&b1).expect("header"), block.header);
            assert_eq!(c.block_height(&b1).expect("height"), Some(1));
            assert_eq!(c.block_hash(9).expect("no block"), None);
            let coinbase = block.txdata[0].compute_txid();
            let coin = c.utxo(&OutPoint { txid: coinbase, vout: 0 }, false).expect("utxo").expect("unspent");
            assert_eq!(coin.confirmations, 3);
            assert!(coin.coinbase);
            assert_eq!(coin.script_pubkey, addr.script_pubkey());
            assert_eq!(
                c.transaction(&coinbase, Some(&b1)).expect("tx").map(|t| t.compute_txid()),
                Some(coinbase)
            );
            assert_eq!(c.estimate_fee(6).expect("estimate"), None);
            assert_eq!(c.relay_fee().expect("relay"), FeeRate::from_sat_per_vb_u32(1));
            // An immature coinbase spend is refused with a reason, not an error.
            let spend = Transaction {
                version: bitcoin::transaction::Version::TWO,
                lock_time: bitcoin::absolute::LockTime::ZERO,
                input: vec![bitcoin::TxIn {
                    previous_output: OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 },
                    ..Default::default()
                }],
                output: vec![bitcoin::TxOut {
                    value: Amount::from_sat(1000),
                    script_pubkey: addr.script_pubkey(),
                }],
            };
            assert!(matches!(c.test_accept(&spend), Err(BroadcastError::InputsMissing(_))));
            assert!(matches!(c.broadcast(&spend), Err(BroadcastError::InputsMissing(_))));
            assert!(!c.in_mempool(&spend.compute_txid()).expect("mempool"));
            // invalidateblock disconnects the block and all above it.
            let b2 = c.block_hash(2).expect("hash").expect("block 2");
            c.raw_call("invalidateblock", json!([b2.to_string()])).expect("invalidate");
            assert_eq!(c.chain_info().expect("tip").tip_height, 1);
            assert_eq!(c.block_height(&b2).expect("stale"), None);
            // Bad input: a clear RPC error, never a panic; a wrong cookie: refused.
            assert!(c.raw_call("getblockhash", json!(["x"])).is_err());
            assert!(c.raw_call("nosuchmethod", json!([])).is_err());
            let wrong = BitcoinCoreRpc::new(RpcConfig::new(
                url,
                RpcAuth::UserPass { user: "__cookie__".into(), password: "wrong".into() },
            ))
            .expect("client");
            assert!(wrong.chain_info().is_err());
        })
        .await
        .expect("checks");
        drop(rpc);
    }
}
