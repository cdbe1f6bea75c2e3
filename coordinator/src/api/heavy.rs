//! Limits on the API's expensive reads (receipt proofs, audits against Bitcoin Core, proof
//! bundles, `.ots` files, calendar timestamps, the payout list): each client (by the TCP
//! peer's IP address: behind a reverse proxy every client is the proxy, so limit there) has
//! a token bucket, and at most a few such reads run at once, each on a blocking thread to its
//! end. A client past its bucket is answered 429 with `Retry-After`; a read that finds every
//! slot taken for a second is answered 503 with `Retry-After`. Cheap reads, the dashboard's
//! polling and writes are not limited here (writes need the operator's token).
//!
//! Owns the buckets and the slots. Must never limit anything but the routes it is put on,
//! and never grow without bound: past `MAX_CLIENTS` clients, the ones whose buckets are full
//! (who owe nothing) are forgotten first.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::ApiError;

/// Clients whose buckets are remembered at most.
pub const MAX_CLIENTS: usize = 4096;

/// How long a read waits for a slot before it is answered 503.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// The limits, as configured (`[api]` `heavy_reads_per_second`, `heavy_read_burst`,
/// `heavy_reads_at_once`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Expensive reads per second each client may make.
    pub per_second: u32,
    /// How many it may make at once after a quiet spell.
    pub burst: u32,
    /// Expensive reads running at once, all clients together.
    pub at_once: usize,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets and the slots, shared by every request of the router.
pub struct HeavyReads {
    limits: Limits,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    slots: Arc<Semaphore>,
}

/// What a client's bucket says of one more read.
#[derive(Debug, PartialEq)]
pub enum Admission {
    /// Take it.
    Admitted,
    /// Refused: ask again after this long.
    RetryAfter(Duration),
}

impl HeavyReads {
    /// Limits of `limits` (each at least 1).
    pub fn new(limits: Limits) -> Arc<Self> {
        let limits = Limits {
            per_second: limits.per_second.max(1),
            burst: limits.burst.max(1),
            at_once: limits.at_once.max(1),
        };
        Arc::new(HeavyReads {
            limits,
            buckets: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(limits.at_once)),
        })
    }

    /// Takes a token of `client`'s bucket at `now`, or says how long until there is one.
    pub fn admit(&self, client: IpAddr, now: Instant) -> Admission {
        let rate = f64::from(self.limits.per_second);
        let burst = f64::from(self.limits.burst);
        let Ok(mut buckets) = self.buckets.lock() else {
            return Admission::RetryAfter(Duration::from_secs(1));
        };
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            // Forget who owes nothing (a full bucket is what a new client gets anyway).
            buckets
                .retain(|_, b| b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_CLIENTS {
                // Every one of them is in debt: a newcomer waits for the slowest to repay
                // rather than evict one (which would hand it a fresh burst).
                return Admission::RetryAfter(Duration::from_secs_f64(1.0 / rate));
            }
        }
        let b = buckets.entry(client).or_insert(Bucket { tokens: burst, last: now });
        b.tokens = (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Admission::Admitted
        } else {
            Admission::RetryAfter(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }

    /// Clients remembered now.
    pub fn clients(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

/// The middleware: the client's bucket, then a slot for the length of the read.
pub async fn limit(
    State(heavy): State<Arc<HeavyReads>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if let Admission::RetryAfter(wait) = heavy.admit(from.ip(), Instant::now()) {
        let secs = wait.as_secs().max(1);
        let mut r = ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many expensive reads from this client; retry after {secs} s"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        return r;
    }
    let Ok(Ok(slot)) = tokio::time::timeout(SLOT_WAIT, heavy.slots.clone().acquire_owned()).await else {
        let mut r =
            ApiError(StatusCode::SERVICE_UNAVAILABLE, "busy with other expensive reads; retry".into())
                .into_response();
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    // The read runs on a blocking thread to its end, holding its slot, even if its client
    // goes away: the slots bound the work itself, and the async threads (the p2p loop, the
    // rest of the API) never wait on a read.
    let handle = tokio::runtime::Handle::current();
    match tokio::task::spawn_blocking(move || {
        let r = handle.block_on(next.run(request));
        drop(slot);
        r
    })
    .await
    {
        Ok(r) => r,
        Err(_) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the read failed".into()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_client_gets_its_burst_then_the_rate_and_others_are_untouched() {
        let h = HeavyReads::new(Limits { per_second: 2, burst: 3, at_once: 1 });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(h.admit(ip(1), t0), Admission::Admitted);
        }
        let Admission::RetryAfter(wait) = h.admit(ip(1), t0) else { panic!("past the burst") };
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500), "{wait:?}");
        assert_eq!(h.admit(ip(2), t0), Admission::Admitted, "another client has its own bucket");
        assert_eq!(h.admit(ip(1), t0 + Duration::from_millis(500)), Admission::Admitted, "refilled at 2/s");
        assert!(matches!(h.admit(ip(1), t0 + Duration::from_millis(500)), Admission::RetryAfter(_)));
    }

    #[test]
    fn many_clients_are_forgotten_once_they_owe_nothing_and_never_grow_the_table() {
        let h = HeavyReads::new(Limits { per_second: 1, burst: 1, at_once: 1 });
        let t0 = Instant::now();
        let client = |i: usize| IpAddr::from(u32::try_from(i).unwrap().to_be_bytes());
        for i in 0..MAX_CLIENTS {
            assert_eq!(h.admit(client(i), t0), Admission::Admitted);
        }
        // All in debt: a newcomer is told to wait, and no one is evicted (a fresh burst).
        assert!(matches!(h.admit(client(MAX_CLIENTS), t0), Admission::RetryAfter(_)));
        assert!(matches!(h.admit(client(0), t0), Admission::RetryAfter(_)), "still in debt");
        assert_eq!(h.clients(), MAX_CLIENTS);
        // Once they have repaid, they are forgotten to make room.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(h.admit(client(MAX_CLIENTS), later), Admission::Admitted);
        assert!(h.clients() <= MAX_CLIENTS);
    }
}
