//! Finding a coordinator's p2p address from its HTTP API (`GET /v1/health` lists the node's
//! listen addresses, each ending in its peer id): what lets a worker be configured with only
//! `--coordinator-api http://coordinator:8686`, as in docker-compose where the coordinator's
//! key is made on its first start. Over `https://` the answer, and so the peer id, cannot be
//! swapped on the way; over `http://` it can, which is fine only on a trusted network.
//!
//! Owns the request and the address rewrite. Must never trust the answer further than the
//! peer id it names: the worker checks every message against that key as for any coordinator.

use std::net::ToSocketAddrs;
use std::time::Duration;

/// Largest health answer read.
const MAX_ANSWER: u64 = 64 * 1024;

/// The p2p address to dial for the coordinator whose API is `api`: the port and peer id it
/// reports, at the address its API's host name resolves to (it may listen on 0.0.0.0).
pub fn p2p_from_api(api: &str) -> Result<String, String> {
    let agent = cairn_audit::web::agent(Duration::from_secs(10));
    let url = format!("{}/v1/health", api.trim_end_matches('/'));
    let mut r = agent.get(&url).call().map_err(|e| format!("{url}: {e}"))?;
    if r.status().as_u16() != 200 {
        return Err(format!("{url}: HTTP {}", r.status().as_u16()));
    }
    let v: serde_json::Value =
        r.body_mut().with_config().limit(MAX_ANSWER).read_json().map_err(|e| format!("{url}: {e}"))?;
    let addrs: Vec<&str> =
        v["p2p"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
    let first = addrs.first().ok_or_else(|| format!("{url}: no p2p addresses in the answer"))?;
    rewrite(first, api)
}

/// `/ip4/<any>/tcp/<port>/p2p/<peer>` → the same port and peer at the API host's address.
fn rewrite(addr: &str, api: &str) -> Result<String, String> {
    let parts: Vec<&str> = addr.split('/').collect();
    let after = |tag: &str| parts.iter().position(|p| *p == tag).and_then(|i| parts.get(i + 1)).copied();
    let port: u16 =
        after("tcp").and_then(|p| p.parse().ok()).ok_or_else(|| format!("{addr:?}: no tcp port"))?;
    let peer = after("p2p").filter(|p| !p.is_empty()).ok_or_else(|| format!("{addr:?}: no peer id"))?;
    let url = url::Url::parse(api).map_err(|e| format!("{api:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{api:?} is not an http:// or https:// URL"));
    }
    let host = url.host_str().ok_or_else(|| format!("{api:?} names no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .map(|a| a.ip())
        .min_by_key(|ip| ip.is_ipv6())
        .ok_or_else(|| format!("{host} resolves to nothing"))?;
    let proto = if ip.is_ipv4() { "ip4" } else { "ip6" };
    Ok(format!("/{proto}/{ip}/tcp/{port}/p2p/{peer}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_host_replaces_the_listen_address() {
        let peer = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
        let a = format!("/ip4/0.0.0.0/tcp/7070/p2p/{peer}");
        assert_eq!(
            rewrite(&a, "http://127.0.0.1:8686").unwrap(),
            format!("/ip4/127.0.0.1/tcp/7070/p2p/{peer}")
        );
        assert_eq!(
            rewrite(&a, "http://localhost:8686/").unwrap(),
            format!("/ip4/127.0.0.1/tcp/7070/p2p/{peer}")
        );
        assert!(rewrite("/ip4/0.0.0.0/tcp/7070", "http://127.0.0.1:1").is_err());
        // Over TLS, so the peer id cannot be swapped on the way.
        assert_eq!(
            rewrite(&a, "https://127.0.0.1:8443/").unwrap(),
            format!("/ip4/127.0.0.1/tcp/7070/p2p/{peer}")
        );
        assert!(rewrite(&a, "ftp://127.0.0.1").is_err());
        assert!(rewrite(&a, "http://[::1]:8686").unwrap().starts_with("/ip6/::1/tcp/7070/"));
        assert!(rewrite("/ip4/0.0.0.0/udp/1/p2p/x", "http://127.0.0.1").is_err());
    }
}
