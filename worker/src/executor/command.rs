//! An external command as executor: the task input on stdin, the result on stdout.
//!
//! Owns spawning, feeding, bounding and reaping the process, and what it starts: the program
//! runs in a process group of its own, and the whole group is killed when the run ends
//! (exit, timeout, too much output), so a grandchild holding a pipe open does not outlive
//! the task. The worker never waits unboundedly on the pipes: a descendant that left the
//! group (`setsid`) is out of reach, and the run ends without it. Must never pass task data
//! through a shell, an argument or an environment variable: the program and its arguments
//! come from the worker's config only, and the task's bytes only ever reach stdin.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_spec::{ComparisonRule, ExecutorKind};

use super::{ExecError, Executor};

/// Bytes of stderr kept for the error message.
const STDERR_KEPT: usize = 512;

/// Kills the child's whole process group (it leads one: `process_group(0)`), then reaps the
/// child. Only ever called before the child is reaped, so the group id cannot have been
/// reused by another process. Returns whether anything was there to kill.
fn kill_group(child: &mut Child) -> bool {
    let hit = i32::try_from(child.id()).is_ok_and(|pid| {
        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).is_ok()
    });
    let _ = child.kill();
    let _ = child.wait();
    hit
}

/// Whether the child has exited, without reaping it (`WNOWAIT`): its pid, and so its group's
/// id, stays reserved until [`kill_group`] has run.
fn exited(child: &Child) -> Result<bool, String> {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    let pid = i32::try_from(child.id()).map_err(|e| e.to_string())?;
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(nix::unistd::Pid::from_raw(pid)), flags) {
        Ok(WaitStatus::StillAlive) => Ok(false),
        Ok(_) => Ok(true),
        Err(e) => Err(e.to_string()),
    }
}

/// A configured external program.
#[derive(Clone, Debug)]
pub struct CommandExecutor {
    /// The program (a path, or a name looked up on PATH).
    pub program: PathBuf,
    /// Its fixed arguments.
    pub args: Vec<String>,
    /// Wall-clock limit per run.
    pub timeout: Duration,
    /// Largest result accepted.
    pub max_output_bytes: usize,
}

impl Executor for CommandExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Command
    }

    fn rule(&self) -> ComparisonRule {
        // A deterministic program's stdout, byte for byte.
        ComparisonRule::ExactHash
    }

    fn run(&self, input: &[u8]) -> Result<Vec<u8>, ExecError> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| ExecError::Failed(format!("cannot start {}: {e}", self.program.display())))?;
        let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            kill_group(&mut child);
            return Err(ExecError::Failed("no pipes to the child".into()));
        };
        let data = input.to_vec();
        // Feeding and draining on their own threads: a program that writes before it has read
        // everything must not deadlock against us.
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let limit = self.max_output_bytes;
        let (out_tx, out_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let r = stdout.take(limit as u64 + 1).read_to_end(&mut out);
            let _ = out_tx.send(r.map(|_| out));
        });
        let (err_tx, err_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = (&mut stderr).take(STDERR_KEPT as u64).read_to_end(&mut out);
            let _ = err_tx.send(out);
            // Drain the rest so a chatty program never blocks on a full stderr.
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        });
        let start = Instant::now();
        let mut out = None;
        let status = loop {
            if out.is_none() {
                if let Ok(r) = out_rx.try_recv() {
                    let r: std::io::Result<Vec<u8>> = r;
                    let bytes = r.map_err(|e| ExecError::Failed(format!("reading stdout: {e}")))?;
                    if bytes.len() > limit {
                        // Stop a program that keeps writing past the limit now, not at the timeout.
                        kill_group(&mut child);
                        return Err(ExecError::TooLarge(limit));
                    }
                    out = Some(bytes);
                }
            }
            match exited(&child) {
                Ok(true) => {
                    // The program is done: whatever it left running goes with it, closing
                    // the pipes it held, so the feeder (blocked on a full stdin nobody reads)
                    // and the readers end.
                    let _ = kill_group(&mut child);
                    break child.wait();
                }
                Ok(false) if start.elapsed() >= self.timeout => {
                    kill_group(&mut child);
                    return Err(ExecError::Timeout(self.timeout.as_millis() as u64));
                }
                Ok(false) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => {
                    kill_group(&mut child);
                    return Err(ExecError::Failed(format!("waiting for the child: {e}")));
                }
            }
        };
        let status = status.map_err(|e| ExecError::Failed(format!("waiting for the child: {e}")))?;
        // Not joined: a feeder stuck on a pipe held by a descendant that left the group must
        // not hold the worker; it ends when that pipe closes.
        drop(feeder);
        let out = match out {
            Some(o) => o,
            None => out_rx
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| ExecError::Failed("stdout still open after the program exited".into()))?
                .map_err(|e| ExecError::Failed(format!("reading stdout: {e}")))?,
        };
        let err = err_rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
        // Too much output first: a program stopped by the closed pipe (SIGPIPE, as `yes` is)
        // exits unsuccessfully because it wrote too much (it raced the check in the loop).
        if out.len() > limit {
            return Err(ExecError::TooLarge(limit));
        }
        if !status.success() {
            return Err(ExecError::Failed(format!(
                "{} exited with {status}: {}",
                self.program.display(),
                String::from_utf8_lossy(&err).trim()
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sh(script: &str, timeout_ms: u64, max: usize) -> CommandExecutor {
        CommandExecutor {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            timeout: Duration::from_millis(timeout_ms),
            max_output_bytes: max,
        }
    }

    #[test]
    fn stdin_to_stdout() {
        let e = sh("tr a-z A-Z", 5000, 100);
        assert_eq!(e.run(b"hello").unwrap(), b"HELLO");
    }

    #[test]
    fn task_data_is_never_interpreted() {
        // Input that would do harm in a shell is only bytes on stdin.
        let e = sh("cat", 5000, 100);
        assert_eq!(e.run(b"$(touch /tmp/pwned); `id`").unwrap(), b"$(touch /tmp/pwned); `id`");
    }

    #[test]
    fn limits_and_failures() {
        assert!(matches!(sh("sleep 5", 100, 10).run(b""), Err(ExecError::Timeout(100))));
        assert!(matches!(sh("yes", 5000, 1000).run(b""), Err(ExecError::TooLarge(1000))));
        let e = sh("echo oops >&2; exit 3", 5000, 10).run(b"").unwrap_err();
        assert!(e.to_string().contains("oops"), "{e}");
        let missing = CommandExecutor { program: "/nonexistent/prog".into(), ..sh("", 100, 10) };
        assert!(matches!(missing.run(b""), Err(ExecError::Failed(_))));
    }

    /// Whether a process whose command line contains `marker` is alive.
    fn alive(marker: &str) -> bool {
        std::fs::read_dir("/proc").unwrap().filter_map(Result::ok).any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
    }

    #[test]
    fn a_grandchild_holding_the_pipes_neither_hangs_the_worker_nor_outlives_the_task() {
        // The program starts a background child that keeps stdin and stdout open and never
        // reads, then exits. With 1 MB of input the feeder blocks on the full pipe: before
        // process groups this hung the worker for good.
        let marker = format!("cairn-grandchild-{}", std::process::id());
        // (An asynchronous list's stdin is /dev/null unless redirected: fd 3 keeps the pipe.)
        let e = sh(&format!("exec 3<&0; sh -c 'sleep 30; : {marker}' <&3 & echo started"), 10_000, 100);
        let t0 = Instant::now();
        let r = e.run(&vec![b'x'; 1 << 20]);
        assert!(t0.elapsed() < Duration::from_secs(8), "took {:?}", t0.elapsed());
        assert_eq!(r.unwrap(), b"started\n");
        std::thread::sleep(Duration::from_millis(200));
        assert!(!alive(&marker), "the grandchild outlived the task");

        // The same on a timeout: the program and what it started are gone.
        let marker = format!("cairn-timeout-{}", std::process::id());
        let e = sh(&format!("sh -c 'sleep 30; : {marker}' & sleep 30"), 300, 100);
        assert!(matches!(e.run(b""), Err(ExecError::Timeout(300))));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!alive(&marker), "the grandchild outlived the timeout");
    }
}
