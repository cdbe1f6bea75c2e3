//! Shared test helpers: a tiny HTTP/1.1 client over std sockets, and a worker that speaks
//! to a coordinator over real libp2p.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_p2p::{Acceptance, Network, NetworkConfig, NetworkEvent, Peer};
use cairn_spec::work::commitment_value;
use cairn_spec::{
    Claim, Commitment, GossipMessage, Hash32, Payload, PubKey, Registration, RequestBody, ResponseBody,
    Reveal, Signed, SigningKey,
};
use serde_json::Value;

pub const ADDR: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

/// One HTTP request; returns (status, JSON body or the text as a JSON string).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let v = serde_json::from_str(rest).unwrap_or(Value::String(rest.to_string()));
    (status, v)
}

pub fn key(i: u32) -> SigningKey {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&(i + 1).to_be_bytes());
    b[31] = 0x42;
    SigningKey::from_secret_bytes(b).unwrap()
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A worker node: its own libp2p identity (its protocol key), connected to the coordinator.
pub struct Worker {
    pub key: SigningKey,
    pub net: Network,
    pub coord: Peer,
    pub announced: Arc<Mutex<Vec<Hash32>>>,
}

pub fn salt(w: &PubKey, task: &Hash32) -> [u8; 32] {
    let mut s = task.0;
    s[1] ^= w.as_bytes()[1];
    s[30] = 0xa5;
    s
}

impl Worker {
    pub async fn start(key: SigningKey, coord_addr: &str) -> Worker {
        let mut cfg = NetworkConfig::new(cairn_spec::Network::Regtest);
        cfg.heartbeat = Duration::from_millis(200);
        let (net, mut events) = Network::start(cfg, &key).await.unwrap();
        let coord: Peer = coord_addr.rsplit('/').next().unwrap().parse().unwrap();
        let announced = Arc::new(Mutex::new(Vec::new()));
        let (n2, a2) = (net.clone(), announced.clone());
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let NetworkEvent::Gossip { message, id, .. } = ev {
                    if let GossipMessage::Task(t) = &message {
                        a2.lock().unwrap().push(cairn_spec::Object::id(&t.body.task));
                    }
                    let _ = n2.report(id, Acceptance::Accept).await;
                }
            }
        });
        net.dial(coord_addr).await.unwrap();
        let w = Worker { key, net, coord, announced };
        // Connected once a request round-trips.
        for _ in 0..100 {
            if w.try_req(RequestBody::GetEpochs { from: 0, count: 1 }).await.is_some() {
                return w;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("worker could not reach the coordinator");
    }

    pub fn public(&self) -> PubKey {
        self.key.public()
    }

    async fn try_req(&self, body: RequestBody) -> Option<ResponseBody> {
        self.net.request(&self.coord, body, Duration::from_secs(10)).await.ok()
    }

    pub async fn req(&self, body: RequestBody) -> ResponseBody {
        for _ in 0..50 {
            match self.try_req(body.clone()).await {
                Some(ResponseBody::Error { code: 429, .. }) | None => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Some(r) => return r,
            }
        }
        panic!("request kept failing")
    }

    pub async fn register(&self, coordinator: PubKey, difficulty: u32) -> ResponseBody {
        let mut reg = Registration {
            network: cairn_spec::Network::Regtest,
            coordinator,
            worker: self.public(),
            payout_address: ADDR.into(),
            created_at: now(),
            pow_nonce: 0,
        };
        assert!(reg.solve_pow(difficulty, 1 << 24));
        self.req(RequestBody::Register(Signed::sign(reg, &self.key, &[1; 32]))).await
    }

    pub async fn claim(&self, task: Hash32) -> ResponseBody {
        let c = Claim { task, worker: self.public(), claimed_at: now() };
        self.req(RequestBody::Claim(Signed::sign(c, &self.key, &[1; 32]))).await
    }

    pub async fn commit(&self, task: Hash32, result: &[u8]) -> ResponseBody {
        let v = commitment_value(
            &task,
            &self.public(),
            &cairn_spec::content_hash(result),
            &salt(&self.public(), &task),
        );
        let c = Commitment { task, worker: self.public(), commitment: v };
        self.req(RequestBody::Commit(Signed::sign(c, &self.key, &[1; 32]))).await
    }

    pub async fn reveal(&self, task: Hash32, result: &[u8]) -> ResponseBody {
        let r = Reveal {
            task,
            worker: self.public(),
            result: Payload::Inline(result.to_vec()),
            salt: salt(&self.public(), &task),
        };
        self.req(RequestBody::Reveal(Signed::sign(r, &self.key, &[1; 32]))).await
    }
}

/// A node config for tests: regtest, no Bitcoin, one exact class, cheap registration.
pub fn test_config(dir: &std::path::Path) -> String {
    format!(
        r#"
network = "regtest"
data_dir = "{}"
[api]
listen = "127.0.0.1:0"
[bitcoin]
mode = "none"
[lifecycle]
pow_difficulty = 4
audit_min_ppm = 0
epoch_interval_secs = 3600
[[class]]
name = "echo"
executor = "command"
rule = "exact"
replication = 1
reward_per_unit = 100
max_input_bytes = 4096
lease_secs = 30
reveal_secs = 30
"#,
        dir.display()
    )
}
