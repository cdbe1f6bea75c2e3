//! The HTTP(S) client for everything that is not Bitcoin Core: coordinators' and followers'
//! APIs (audits, worker status, discovery) and model downloads. HTTP and HTTPS, trusting the
//! machine's certificate store.
//!
//! Owns the client's settings, in one place for every caller. Must never be what integrity
//! rests on: answers are checked by signatures, pinned hashes and Bitcoin.

use std::time::Duration;

use ureq::tls::{RootCerts, TlsConfig};

/// An agent with `total` as the limit of a whole request (connect, headers and body).
pub fn agent(total: Duration) -> ureq::Agent {
    // The machine's trust store, not a bundled one: mirrors and proxies that re-sign TLS are
    // trusted exactly as curl and pip on the same machine trust them.
    let tls = TlsConfig::builder().root_certs(RootCerts::PlatformVerifier).build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(total))
        .timeout_connect(Some(Duration::from_secs(30).min(total)))
        .max_redirects(5)
        .http_status_as_error(false)
        .build()
        .into()
}
