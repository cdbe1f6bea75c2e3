//! An external command as executor: the task input on stdin, the result on stdout.
//!
//! Owns spawning, feeding, bounding and reaping the process. Must never pass task data
//! through a shell, an argument or an environment variable: the program and its arguments
//! come from the worker's config only, and the task's bytes only ever reach stdin.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_spec::{ComparisonRule, ExecutorKind};

use super::{ExecError, Executor};

/// Bytes of stderr kept for the error message.
const STDERR_KEPT: usize = 512;

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
            .spawn()
            .map_err(|e| ExecError::Failed(format!("cannot start {}: {e}", self.program.display())))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
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
        let err_reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stderr.take(STDERR_KEPT as u64).read_to_end(&mut out);
            out
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
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(ExecError::TooLarge(limit));
                    }
                    out = Some(bytes);
                }
            }
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if start.elapsed() >= self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ExecError::Timeout(self.timeout.as_millis() as u64));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(ExecError::Failed(format!("waiting for the child: {e}"))),
            }
        };
        let _ = feeder.join();
        let out = match out {
            Some(o) => o,
            None => out_rx
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| ExecError::Failed("stdout still open after the program exited".into()))?
                .map_err(|e| ExecError::Failed(format!("reading stdout: {e}")))?,
        };
        let err = err_reader.join().unwrap_or_default();
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
}
