//! The node test support (`cairn_testkit::node`), and starting the devnet in this process.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub use cairn_testkit::node::*;

/// A devnet run in this process: where it runs, its stop switch, and its task (which yields
/// the summary once stopped).
pub type RunningDevnet = (
    cairn_cli::devnet::Started,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<cairn_cli::devnet::Summary, cairn_cli::devnet::DevnetError>>,
);

/// Starts `cairn devnet` with `opts` and waits (up to 2 minutes) until it runs.
pub async fn start_devnet(opts: cairn_cli::devnet::DevnetOptions) -> RunningDevnet {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(cairn_cli::devnet::run(
        opts,
        async move {
            let _ = stop_rx.await;
        },
        move |s| {
            let _ = started_tx.send(s.clone());
        },
        |_| {},
    ));
    let started =
        tokio::task::spawn_blocking(move || started_rx.recv_timeout(std::time::Duration::from_secs(120)))
            .await
            .unwrap()
            .expect("devnet did not start");
    (started, stop_tx, run)
}
