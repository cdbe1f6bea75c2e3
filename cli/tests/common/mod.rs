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
            .unwrap();
    match started {
        Ok(started) => (started, stop_tx, run),
        // The devnet stopped before it ran: say why.
        Err(e) => match tokio::time::timeout(std::time::Duration::from_secs(5), run).await {
            Ok(Ok(Err(why))) => panic!("devnet did not start: {why}"),
            _ => panic!("devnet did not start: {e}"),
        },
    }
}

/// Chromium (`CHROMIUM`, else `/usr/bin/chromium`).
pub fn chromium() -> Option<std::path::PathBuf> {
    std::env::var_os("CHROMIUM")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::path::PathBuf::from("/usr/bin/chromium")))
        .filter(|p| p.is_file())
}

/// playwright-core (`CAIRN_PLAYWRIGHT`, else `~/.cache/cairn/browser`).
pub fn playwright() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("CAIRN_PLAYWRIGHT").map(std::path::PathBuf::from).or_else(|| {
        std::env::var_os("HOME")
            .map(|h| std::path::PathBuf::from(h).join(".cache/cairn/browser/node_modules/playwright-core"))
    })?;
    dir.join("package.json").is_file().then_some(dir)
}

/// The major version of `node` on PATH.
pub fn node_major() -> Option<u32> {
    let out = std::process::Command::new("node").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().trim_start_matches('v').split('.').next()?.parse().ok()
}

/// Chromium and playwright-core, with a Node.js that runs them; `None` after saying what is
/// missing (`cairn_testkit::skip`: a failure under `CI=true`, `.ci/run` installs them).
pub fn browser() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let (Some(chrome), Some(pw)) = (chromium(), playwright()) else {
        cairn_testkit::skip(
            "needs /usr/bin/chromium (or CHROMIUM) and playwright-core in ~/.cache/cairn/browser (or CAIRN_PLAYWRIGHT); .ci/run installs both",
        );
        return None;
    };
    match node_major() {
        None => {
            cairn_testkit::skip("no Node.js (`node`) to run playwright-core");
            None
        }
        Some(v) if v < 20 => {
            cairn_testkit::skip(&format!("Node.js {v} is older than the 20 playwright-core needs"));
            None
        }
        Some(_) => Some((chrome, pw)),
    }
}

/// Runs `tests/browser/<script>` with node against `api`, writing under `out`; panics with
/// its output when it fails.
pub fn run_browser_script(
    script: &str,
    api: &str,
    out: &std::path::Path,
    chrome: &std::path::Path,
    pw: &std::path::Path,
) -> String {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser").join(script);
    let result = std::process::Command::new("node")
        .arg(&path)
        .arg(api)
        .arg(out)
        .env("CHROMIUM", chrome)
        .env("PLAYWRIGHT_CORE", pw)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "browser check {script} failed:\n{stdout}\n{stderr}");
    stdout
}
