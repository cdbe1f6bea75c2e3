//! The Bitcoin Core backend: a small JSON-RPC client over HTTP/1.1 (ureq, with keep-alive),
//! with cookie or user/password auth, bounded responses, retries with backoff for transient
//! failures, and a wait for the node to finish warming up.
//!
//! Why not `bitcoincore-rpc`: it was archived in 2025. Its successor `corepc-client`
//! describes itself as a blocking client for integration tests, and its typed results are
//! per Core version (shapes changed in v28–v30). Cairn needs a dozen calls; this module asks
//! for raw hex wherever Core offers it (blocks, headers, transactions), whose shape never
//! changes, and reads only the few JSON fields it needs, tolerating the rest. See ADR 0002.
//!
//! Owns talking to Core. Must never log credentials, never trust a response's size, and
//! never turn a refusal into success except "already known" answers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Amount, Block, BlockHash, FeeRate, OutPoint, ScriptBuf, Transaction, Txid};
use serde_json::{json, Value};

use crate::backend::{
    BroadcastError, ChainBackend, ChainError, ChainInfo, OutputScan, ScannedOutput, UtxoInfo,
};

/// Largest response accepted (a full block in hex is at most ~8 MB).
const MAX_RESPONSE: usize = 32 << 20;
/// How long `scantxoutset` may take: it reads the whole UTXO set (minutes on mainnet).
const SCAN_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How to authenticate.
#[derive(Clone)]
pub enum RpcAuth {
    /// Bitcoin Core's `.cookie` file (re-read on every call: it changes when Core restarts).
    Cookie(PathBuf),
    /// `rpcuser` / `rpcpassword`.
    UserPass {
        /// User.
        user: String,
        /// Password.
        password: String,
    },
}

impl RpcAuth {
    /// The credentials a user gave: a cookie file wins; else a user with a password; `None`
    /// when neither is complete.
    pub fn from_parts(cookie: Option<&Path>, user: Option<&str>, password: Option<&str>) -> Option<Self> {
        match (cookie, user, password) {
            (Some(c), _, _) => Some(RpcAuth::Cookie(c.to_owned())),
            (None, Some(u), Some(p)) => {
                Some(RpcAuth::UserPass { user: u.to_owned(), password: p.to_owned() })
            }
            _ => None,
        }
    }
}

impl std::fmt::Debug for RpcAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcAuth::Cookie(p) => write!(f, "Cookie({})", p.display()),
            RpcAuth::UserPass { user, .. } => write!(f, "UserPass({user}, <redacted>)"),
        }
    }
}

/// Where and how to reach Bitcoin Core.
#[derive(Clone, Debug)]
pub struct RpcConfig {
    /// `http://host:port` (a path, e.g. `/wallet/x`, is kept).
    pub url: String,
    /// Credentials.
    pub auth: RpcAuth,
    /// Connect, read and write timeout per call.
    pub timeout: Duration,
    /// Attempts per call for transient failures (at least 1).
    pub attempts: u32,
    /// First backoff delay; doubles per attempt.
    pub backoff: Duration,
}

impl RpcConfig {
    /// A config with 30 s timeouts and 3 attempts starting at 200 ms.
    pub fn new(url: impl Into<String>, auth: RpcAuth) -> Self {
        RpcConfig {
            url: url.into(),
            auth,
            timeout: Duration::from_secs(30),
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// A JSON-RPC client for Bitcoin Core. Its HTTP agent keeps connections open between calls
/// (Core serves keep-alive), so a scan of many blocks does not open a socket per block.
pub struct BitcoinCoreRpc {
    config: RpcConfig,
    agent: ureq::Agent,
    next_id: AtomicU64,
}

impl std::fmt::Debug for BitcoinCoreRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitcoinCoreRpc").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A failed exchange: too-large answers are the node's fault, everything else is transport.
fn transport(e: ureq::Error) -> CallError {
    match e {
        ureq::Error::BodyExceedsLimit(_) => CallError::Parse("response too large".into()),
        ureq::Error::LargeResponseHeader(..) => CallError::Parse("HTTP header too large".into()),
        other => CallError::Transport(other.to_string()),
    }
}

/// A failed call, before it is classified for callers.
#[derive(Debug)]
enum CallError {
    Transport(String),
    Http(u16, String),
    Rpc(i64, String),
    Parse(String),
}

impl CallError {
    fn is_transient(&self) -> bool {
        match self {
            CallError::Transport(_) => true,
            // -28: RPC_IN_WARMUP (loading block index, verifying blocks, ...).
            CallError::Rpc(code, _) => *code == -28,
            CallError::Http(status, _) => *status == 503,
            CallError::Parse(_) => false,
        }
    }

    fn into_chain(self) -> ChainError {
        let transient = self.is_transient();
        let msg = match self {
            CallError::Transport(m) => format!("cannot reach Bitcoin Core: {m}"),
            CallError::Http(401, _) => "Bitcoin Core refused the credentials (HTTP 401): check the cookie file or rpcuser/rpcpassword".into(),
            CallError::Http(s, m) => format!("HTTP {s} from Bitcoin Core: {m}"),
            CallError::Rpc(c, m) => format!("Bitcoin Core error {c}: {m}"),
            CallError::Parse(m) => format!("unexpected answer from Bitcoin Core: {m}"),
        };
        if transient {
            ChainError::Transient(msg)
        } else {
            ChainError::Permanent(msg)
        }
    }
}

fn parse_url(url: &str) -> Result<(String, u16, String), ChainError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ChainError::Permanent(format!("RPC URL {url:?} must start with http://")))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(rest), rest.get(i..).unwrap_or("/")),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>().map_err(|_| ChainError::Permanent(format!("bad port in RPC URL {url:?}")))?,
        ),
        None => return Err(ChainError::Permanent(format!("RPC URL {url:?} needs a port"))),
    };
    if host.is_empty() {
        return Err(ChainError::Permanent(format!("RPC URL {url:?} needs a host")));
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port, path.to_owned()))
}

fn btc_to_sat(v: &Value) -> Option<Amount> {
    let btc = v.as_f64()?;
    if !(0.0..=21_000_000.0).contains(&btc) {
        return None;
    }
    Some(Amount::from_sat((btc * 1e8).round() as u64))
}

/// BTC/kvB (as Core reports rates) to a fee rate.
fn btc_per_kvb(v: &Value) -> Option<FeeRate> {
    btc_to_sat(v).map(|sat_per_kvb| FeeRate::from_sat_per_kwu(sat_per_kvb.to_sat() / 4))
}

impl BitcoinCoreRpc {
    /// A client for `config` (no connection is made yet).
    pub fn new(config: RpcConfig) -> Result<Self, ChainError> {
        parse_url(&config.url)?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            // Core answers errors with 500 and a JSON body: read it, do not fail on the status.
            .http_status_as_error(false)
            .max_redirects(0)
            // Core is reached directly: a proxy from the environment must not see credentials.
            .proxy(None)
            .build()
            .into();
        Ok(BitcoinCoreRpc { config, agent, next_id: AtomicU64::new(1) })
    }

    fn auth_header(&self) -> Result<String, CallError> {
        let cred = match &self.config.auth {
            RpcAuth::Cookie(path) => std::fs::read_to_string(path)
                .map_err(|e| CallError::Transport(format!("reading cookie file {}: {e}", path.display())))?
                .trim()
                .to_owned(),
            RpcAuth::UserPass { user, password } => format!("{user}:{password}"),
        };
        Ok(base64::engine::general_purpose::STANDARD.encode(cred))
    }

    fn post(&self, body: &[u8], timeout: Option<Duration>) -> Result<(u16, Vec<u8>), CallError> {
        let mut req = self
            .agent
            .post(&self.config.url)
            .header("Authorization", format!("Basic {}", self.auth_header()?))
            .header("Content-Type", "application/json");
        if let Some(t) = timeout {
            req = req.config().timeout_global(Some(t)).build();
        }
        let mut resp = req.send(body).map_err(transport)?;
        let status = resp.status().as_u16();
        let body =
            resp.body_mut().with_config().limit(MAX_RESPONSE as u64).read_to_vec().map_err(transport)?;
        Ok((status, body))
    }

    fn call_once(&self, method: &str, params: &Value) -> Result<Value, CallError> {
        self.call_once_within(method, params, None)
    }

    fn call_once_within(
        &self,
        method: &str,
        params: &Value,
        timeout: Option<Duration>,
    ) -> Result<Value, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let req = json!({ "jsonrpc": "1.0", "id": id, "method": method, "params": params });
        let body = serde_json::to_vec(&req).map_err(|e| CallError::Parse(e.to_string()))?;
        let (status, resp) = self.post(&body, timeout)?;
        let parsed: Value = match serde_json::from_slice(&resp) {
            Ok(v) => v,
            Err(_) => {
                return Err(CallError::Http(
                    status,
                    String::from_utf8_lossy(resp.get(..200).unwrap_or(&resp)).into_owned(),
                ))
            }
        };
        if let Some(err) = parsed.get("error").filter(|e| !e.is_null()) {
            let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
            let msg = err.get("message").and_then(Value::as_str).unwrap_or("").to_owned();
            return Err(CallError::Rpc(code, msg));
        }
        if status != 200 {
            return Err(CallError::Http(status, "no JSON-RPC error in body".into()));
        }
        if parsed.get("id").and_then(Value::as_u64) != Some(id) {
            return Err(CallError::Parse(format!("response id does not match request {id}")));
        }
        Ok(parsed.get("result").cloned().unwrap_or(Value::Null))
    }

    /// One call, retried with exponential backoff while the failure is transient.
    fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        let mut delay = self.config.backoff;
        let mut attempt = 1;
        loop {
            match self.call_once(method, &params) {
                Err(e) if e.is_transient() && attempt < self.config.attempts.max(1) => {
                    tracing::debug!(target: "cairn::rpc", method, attempt, error = ?e, "retrying");
                    std::thread::sleep(delay);
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn call_chain(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        self.call(method, params).map_err(CallError::into_chain)
    }

    /// Any RPC, for tests and tools (`generatetoaddress`, `invalidateblock`, ...).
    pub fn raw_call(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        self.call_chain(method, params)
    }

    /// Waits until the node answers (past its warm-up), up to `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<ChainInfo, ChainError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut delay = Duration::from_millis(50);
        loop {
            match self.call_once("getblockchaininfo", &json!([])) {
                Ok(_) => return self.chain_info(),
                Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e.into_chain()),
            }
        }
    }

    /// Refuses a node on another chain than `network`.
    pub fn check_network(&self, network: cairn_spec::Network) -> Result<ChainInfo, ChainError> {
        let info = self.chain_info()?;
        if info.chain != network.core_chain_name() {
            return Err(ChainError::Permanent(format!(
                "Bitcoin Core is on chain {:?}, configured network is {} ({:?})",
                info.chain,
                network,
                network.core_chain_name()
            )));
        }
        Ok(info)
    }

    /// Bitcoin Core's version number (e.g. 300000 for v30.0).
    pub fn version(&self) -> Result<u64, ChainError> {
        let v = self.call_chain("getnetworkinfo", json!([]))?;
        v.get("version")
            .and_then(Value::as_u64)
            .ok_or_else(|| ChainError::Permanent("getnetworkinfo: no version".into()))
    }
}

fn field<'a>(v: &'a Value, name: &str, method: &str) -> Result<&'a Value, ChainError> {
    v.get(name).ok_or_else(|| ChainError::Permanent(format!("{method}: missing field {name}")))
}

fn hex_str<'a>(v: &'a Value, method: &str) -> Result<&'a str, ChainError> {
    v.as_str().ok_or_else(|| ChainError::Permanent(format!("{method}: expected a hex string")))
}

impl ChainBackend for BitcoinCoreRpc {
    fn chain_info(&self) -> Result<ChainInfo, ChainError> {
        let m = "getblockchaininfo";
        let v = self.call_chain(m, json!([]))?;
        let chain = field(&v, "chain", m)?.as_str().unwrap_or_default().to_owned();
        let tip_height = field(&v, "blocks", m)?.as_u64().and_then(|h| u32::try_from(h).ok());
        let tip_hash = hex_str(field(&v, "bestblockhash", m)?, m)?.parse::<BlockHash>();
        match (tip_height, tip_hash) {
            (Some(tip_height), Ok(tip_hash)) => Ok(ChainInfo {
                tip_height,
                tip_hash,
                initial_block_download: v
                    .get("initialblockdownload")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                headers: v
                    .get("headers")
                    .and_then(Value::as_u64)
                    .and_then(|h| u32::try_from(h).ok())
                    .unwrap_or(tip_height)
                    .max(tip_height),
                progress_ppm: v
                    .get("verificationprogress")
                    .and_then(Value::as_f64)
                    .filter(|p| p.is_finite())
                    .map_or(0, |p| (p.clamp(0.0, 1.0) * 1e6).round() as u32),
                embedded: chain == "regtest" && says_embedded(&v),
                chain,
            }),
            _ => Err(ChainError::Permanent(format!("{m}: malformed tip"))),
        }
    }

    fn block_hash(&self, height: u32) -> Result<Option<BlockHash>, ChainError> {
        match self.call("getblockhash", json!([height])) {
            Ok(v) => hex_str(&v, "getblockhash")?
                .parse()
                .map(Some)
                .map_err(|e| ChainError::Permanent(format!("getblockhash: {e}"))),
            // -8: RPC_INVALID_PARAMETER ("Block height out of range").
            Err(CallError::Rpc(-8, _)) => Ok(None),
            Err(e) => Err(e.into_chain()),
        }
    }

    fn block(&self, hash: &BlockHash) -> Result<Block, ChainError> {
        let v = self.call_chain("getblock", json!([hash.to_string(), 0]))?;
        let block: Block = deserialize_hex(hex_str(&v, "getblock")?)
            .map_err(|e| ChainError::Permanent(format!("getblock: {e}")))?;
        if block.block_hash() != *hash {
            return Err(ChainError::Permanent(format!("getblock: node returned another block than {hash}")));
        }
        Ok(block)
    }

    fn block_header(&self, hash: &BlockHash) -> Result<bitcoin::block::Header, ChainError> {
        let v = self.call_chain("getblockheader", json!([hash.to_string(), false]))?;
        let header: bitcoin::block::Header = deserialize_hex(hex_str(&v, "getblockheader")?)
            .map_err(|e| ChainError::Permanent(format!("getblockheader: {e}")))?;
        if header.block_hash() != *hash {
            return Err(ChainError::Permanent(format!(
                "getblockheader: node returned another header than {hash}"
            )));
        }
        Ok(header)
    }

    fn block_height(&self, hash: &BlockHash) -> Result<Option<u32>, ChainError> {
        match self.call("getblockheader", json!([hash.to_string(), true])) {
            Ok(v) => {
                let confirmations = v.get("confirmations").and_then(Value::as_i64).unwrap_or(-1);
                let height = v.get("height").and_then(Value::as_u64).and_then(|h| u32::try_from(h).ok());
                Ok(height.filter(|_| confirmations >= 1))
            }
            // -5: RPC_INVALID_ADDRESS_OR_KEY ("Block not found").
            Err(CallError::Rpc(-5, _)) => Ok(None),
            Err(e) => Err(e.into_chain()),
        }
    }

    fn transaction(&self, txid: &Txid, block: Option<&BlockHash>) -> Result<Option<Transaction>, ChainError> {
        let params = match block {
            Some(b) => json!([txid.to_string(), false, b.to_string()]),
            None => json!([txid.to_string(), false]),
        };
        match self.call("getrawtransaction", params) {
            Ok(v) => {
                let tx: Transaction = deserialize_hex(hex_str(&v, "getrawtransaction")?)
                    .map_err(|e| ChainError::Permanent(format!("getrawtransaction: {e}")))?;
                if tx.compute_txid() != *txid {
                    return Err(ChainError::Permanent(
                        "getrawtransaction: another transaction returned".into(),
                    ));
                }
                Ok(Some(tx))
            }
            Err(CallError::Rpc(-5, _)) => Ok(None),
            Err(e) => Err(e.into_chain()),
        }
    }

    fn utxo(&self, outpoint: &OutPoint, include_mempool: bool) -> Result<Option<UtxoInfo>, ChainError> {
        let m = "gettxout";
        let v = self.call_chain(m, json!([outpoint.txid.to_string(), outpoint.vout, include_mempool]))?;
        if v.is_null() {
            return Ok(None);
        }
        let value = btc_to_sat(field(&v, "value", m)?)
            .ok_or_else(|| ChainError::Permanent(format!("{m}: bad value")))?;
        let script_hex = field(&v, "scriptPubKey", m)?.get("hex").and_then(Value::as_str).unwrap_or_default();
        let script = hex::decode(script_hex).map_err(|e| ChainError::Permanent(format!("{m}: {e}")))?;
        Ok(Some(UtxoInfo {
            value,
            script_pubkey: ScriptBuf::from_bytes(script),
            confirmations: v
                .get("confirmations")
                .and_then(Value::as_u64)
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(0),
            coinbase: v.get("coinbase").and_then(Value::as_bool).unwrap_or(false),
        }))
    }

    fn scan_outputs(&self, script: &ScriptBuf) -> Result<OutputScan, ChainError> {
        let m = "scantxoutset";
        let desc = format!("raw({})", hex::encode(script.as_bytes()));
        let v = self
            .call_once_within(m, &json!(["start", [desc]]), Some(SCAN_TIMEOUT))
            .map_err(CallError::into_chain)?;
        if v.get("success").and_then(Value::as_bool) != Some(true) {
            return Err(ChainError::Transient(format!("{m}: the scan did not complete")));
        }
        let height = field(&v, "height", m)?
            .as_u64()
            .and_then(|h| u32::try_from(h).ok())
            .ok_or_else(|| ChainError::Permanent(format!("{m}: bad height")))?;
        let block = hex_str(field(&v, "bestblock", m)?, m)?
            .parse::<BlockHash>()
            .map_err(|e| ChainError::Permanent(format!("{m}: bestblock: {e}")))?;
        let unspents = field(&v, "unspents", m)?
            .as_array()
            .ok_or_else(|| ChainError::Permanent(format!("{m}: unspents is not a list")))?;
        let outputs = unspents
            .iter()
            .map(|u| {
                let bad = |what: &str| ChainError::Permanent(format!("{m}: unspent with a bad {what}"));
                let txid = u.get("txid").and_then(Value::as_str).and_then(|t| t.parse::<Txid>().ok());
                let vout = u.get("vout").and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok());
                let script = u.get("scriptPubKey").and_then(Value::as_str).and_then(|h| hex::decode(h).ok());
                let height = u.get("height").and_then(Value::as_u64).and_then(|h| u32::try_from(h).ok());
                Ok(ScannedOutput {
                    outpoint: OutPoint {
                        txid: txid.ok_or_else(|| bad("txid"))?,
                        vout: vout.ok_or_else(|| bad("vout"))?,
                    },
                    value: u.get("amount").and_then(btc_to_sat).ok_or_else(|| bad("amount"))?,
                    script_pubkey: ScriptBuf::from_bytes(script.ok_or_else(|| bad("scriptPubKey"))?),
                    height: height.filter(|h| *h <= 0x7fff_ffff).ok_or_else(|| bad("height"))?,
                    // Unsaid is taken as a coinbase: waiting for maturity is the safe error.
                    coinbase: u.get("coinbase").and_then(Value::as_bool).unwrap_or(true),
                })
            })
            .collect::<Result<Vec<_>, ChainError>>()?;
        Ok(OutputScan { height, block, outputs })
    }

    fn estimate_fee(&self, target_blocks: u16) -> Result<Option<FeeRate>, ChainError> {
        let v = self.call_chain("estimatesmartfee", json!([target_blocks]))?;
        // No "feerate" (and an "errors" list) when the node has too little data, e.g. regtest.
        Ok(v.get("feerate").and_then(btc_per_kvb))
    }

    fn relay_fee(&self) -> Result<FeeRate, ChainError> {
        let net = self.call_chain("getnetworkinfo", json!([]))?;
        let pool = self.call_chain("getmempoolinfo", json!([]))?;
        let relay = net.get("relayfee").and_then(btc_per_kvb).unwrap_or(FeeRate::BROADCAST_MIN);
        let pool_min = pool.get("mempoolminfee").and_then(btc_per_kvb).unwrap_or(relay);
        Ok(relay.max(pool_min))
    }

    fn in_mempool(&self, txid: &Txid) -> Result<bool, ChainError> {
        match self.call("getmempoolentry", json!([txid.to_string()])) {
            Ok(_) => Ok(true),
            Err(CallError::Rpc(-5, _)) => Ok(false),
            Err(e) => Err(e.into_chain()),
        }
    }

    fn test_accept(&self, tx: &Transaction) -> Result<(), BroadcastError> {
        let v = self.call_chain("testmempoolaccept", json!([[serialize_hex(tx)]]))?;
        let first =
            v.get(0).ok_or_else(|| ChainError::Permanent("testmempoolaccept: empty answer".into()))?;
        if first.get("allowed").and_then(Value::as_bool) == Some(true) {
            return Ok(());
        }
        let reason = first.get("reject-reason").and_then(Value::as_str).unwrap_or("rejected").to_owned();
        Err(classify_rejection(&reason))
    }

    fn broadcast(&self, tx: &Transaction) -> Result<Txid, BroadcastError> {
        let txid = tx.compute_txid();
        match self.call("sendrawtransaction", json!([serialize_hex(tx)])) {
            Ok(_) => Ok(txid),
            // -27: RPC_VERIFY_ALREADY_IN_CHAIN (or already in the utxo set).
            Err(CallError::Rpc(-27, _)) => Ok(txid),
            Err(CallError::Rpc(code @ (-25 | -26), msg)) => {
                let e = classify_rejection(&msg);
                match e {
                    BroadcastError::Rejected(ref m)
                        if m.contains("txn-already-in-mempool") || m.contains("txn-already-known") =>
                    {
                        Ok(txid)
                    }
                    other => {
                        tracing::debug!(target: "cairn::rpc", code, %txid, "sendrawtransaction refused");
                        Err(other)
                    }
                }
            }
            Err(e) => Err(BroadcastError::Chain(e.into_chain())),
        }
    }
}

/// Sorts Core's rejection reasons into what the anchor machine acts on.
fn classify_rejection(reason: &str) -> BroadcastError {
    let r = reason.to_ascii_lowercase();
    if r.contains("missingorspent") || r.contains("missing inputs") || r.contains("inputs-missing") {
        BroadcastError::InputsMissing(reason.to_owned())
    } else if r.contains("fee") {
        // "min relay fee not met", "mempool min fee not met", "insufficient fee", ...
        BroadcastError::FeeTooLow(reason.to_owned())
    } else {
        BroadcastError::Rejected(reason.to_owned())
    }
}

/// Whether a `getblockchaininfo` answer's `warnings` name Cairn's embedded chain: a string
/// before Core 28, a list of strings since.
fn says_embedded(v: &Value) -> bool {
    let is = |w: &str| w.contains(crate::backend::EMBEDDED_CHAIN_WARNING);
    match v.get("warnings") {
        Some(Value::String(w)) => is(w),
        Some(Value::Array(ws)) => ws.iter().any(|w| w.as_str().is_some_and(is)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_chain_is_told_apart_in_either_warnings_shape() {
        use crate::backend::EMBEDDED_CHAIN_WARNING as W;
        assert!(says_embedded(&json!({ "warnings": W })));
        assert!(says_embedded(&json!({ "warnings": ["something else", W] })));
        assert!(!says_embedded(&json!({ "warnings": "" })));
        assert!(!says_embedded(&json!({ "warnings": ["This is a pre-release test build"] })));
        assert!(!says_embedded(&json!({ "warnings": [1, null] })));
        assert!(!says_embedded(&json!({})));
    }

    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("http://127.0.0.1:18443").unwrap(), ("127.0.0.1".into(), 18443, "/".into()));
        assert_eq!(
            parse_url("http://[::1]:8332/wallet/w").unwrap(),
            ("::1".into(), 8332, "/wallet/w".into())
        );
        assert!(parse_url("https://x:1").is_err());
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("http://:1").is_err());
    }

    #[test]
    fn rates_and_amounts() {
        assert_eq!(btc_per_kvb(&json!(0.00001)), Some(FeeRate::from_sat_per_vb_u32(1)));
        assert_eq!(btc_to_sat(&json!(0.1)), Some(Amount::from_sat(10_000_000)));
        assert_eq!(btc_to_sat(&json!(-1.0)), None);
        assert_eq!(btc_to_sat(&json!("1")), None);
    }

    #[test]
    fn rejections_are_sorted() {
        assert!(matches!(
            classify_rejection("bad-txns-inputs-missingorspent"),
            BroadcastError::InputsMissing(_)
        ));
        assert!(matches!(
            classify_rejection("insufficient fee, rejecting replacement"),
            BroadcastError::FeeTooLow(_)
        ));
        assert!(matches!(
            classify_rejection("min relay fee not met, 100 < 141"),
            BroadcastError::FeeTooLow(_)
        ));
        assert!(matches!(classify_rejection("scriptpubkey"), BroadcastError::Rejected(_)));
    }

    #[test]
    fn credentials_never_in_debug() {
        let a = RpcAuth::UserPass { user: "u".into(), password: "hunter2".into() };
        assert!(!format!("{a:?}").contains("hunter2"));
    }

    #[test]
    fn unreachable_node_is_transient() {
        // Bind then drop a listener: nothing listens on that port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cfg = RpcConfig::new(
            format!("http://127.0.0.1:{port}"),
            RpcAuth::UserPass { user: "u".into(), password: "p".into() },
        );
        cfg.attempts = 2;
        cfg.backoff = Duration::from_millis(1);
        let rpc = BitcoinCoreRpc::new(cfg).unwrap();
        let err = rpc.chain_info().unwrap_err();
        assert!(err.is_transient(), "{err}");
    }
}
