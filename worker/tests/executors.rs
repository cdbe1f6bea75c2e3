//! The executors without the model: an OpenAI-compatible endpoint (a small HTTP server on
//! loopback stands in for llama.cpp / vLLM / Ollama) and an external command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use cairn_spec::{ComparisonRule, ExecutorKind, Hash32, TaskClass};
use cairn_worker::executor::chat::ChatExecutor;
use cairn_worker::executor::command::CommandExecutor;
use cairn_worker::executor::{can_run, ExecError, Executor};
use serde_json::Value;

/// Serves `n` requests with the answers produced by `answer`; sends each request's JSON body
/// to the returned channel.
fn server(n: usize, answer: fn(&Value) -> (u16, String, u64)) -> (String, mpsc::Receiver<Value>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..n {
            let (mut s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            let mut line = String::new();
            let mut path = String::new();
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                if path.is_empty() {
                    path = line.split(' ').nth(1).unwrap_or_default().to_string();
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let mut v: Value = serde_json::from_slice(&body).unwrap();
            v["_path"] = Value::String(path);
            let (status, text, delay_ms) = answer(&v);
            tx.send(v).unwrap();
            std::thread::sleep(Duration::from_millis(delay_ms));
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (format!("http://{addr}/v1"), rx)
}

fn chat(url: &str, timeout_ms: u64) -> ChatExecutor {
    ChatExecutor {
        base_url: url.into(),
        model: "tiny-llm".into(),
        seed: 42,
        max_tokens: 16,
        timeout: Duration::from_millis(timeout_ms),
        max_output_bytes: 1000,
    }
}

#[test]
fn chat_completion_is_greedy_seeded_and_canonical() {
    let (url, seen) = server(1, |v| {
        let prompt = v["messages"][0]["content"].as_str().unwrap().to_uppercase();
        let body = serde_json::json!({ "choices": [{ "message": { "role": "assistant", "content": format!("{prompt}\r\n\n") } }] });
        (200, body.to_string(), 0)
    });
    let out = chat(&url, 5000).run(b"hello, miner").unwrap();
    assert_eq!(out, b"HELLO, MINER", "line endings and trailing space canonicalised");
    let req = seen.recv().unwrap();
    assert_eq!(req["_path"], "/v1/chat/completions");
    assert_eq!(req["model"], "tiny-llm");
    assert_eq!(req["temperature"], 0);
    assert_eq!(req["seed"], 42);
    assert_eq!(req["max_tokens"], 16);
    assert_eq!(req["stream"], false);
}

#[test]
fn a_chat_class_is_taken_only_by_endpoints_with_the_settings_it_pins() {
    let exec = chat("http://127.0.0.1:9/v1", 1000);
    let pinned = |model: &str, seed: u64, max_tokens: u32| {
        class(
            ExecutorKind::ChatCompletion,
            ComparisonRule::ExactHash,
            cairn_spec::task::chat_settings_hash(model, seed, max_tokens),
        )
    };
    assert!(can_run(&exec, &pinned("tiny-llm", 42, 16)).is_ok());
    // Another model, seed or token limit would answer differently, honestly: not taken.
    for other in [pinned("big-llm", 42, 16), pinned("tiny-llm", 7, 16), pinned("tiny-llm", 42, 17)] {
        let e = can_run(&exec, &other).unwrap_err();
        assert!(e.contains("pins model"), "{e}");
    }
}

#[test]
fn chat_failures_are_clear_errors() {
    let (url, _seen) = server(3, |v| match v["messages"][0]["content"].as_str().unwrap() {
        "slow" => (200, "{}".into(), 1500),
        "busy" => (503, r#"{"error":"model loading"}"#.into(), 0),
        _ => (200, r#"{"choices":[]}"#.into(), 0),
    });
    let e = chat(&url, 500).run(b"slow").unwrap_err();
    assert!(matches!(e, ExecError::Timeout(500)), "{e}");
    let e = chat(&url, 5000).run(b"busy").unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
    let e = chat(&url, 5000).run(b"empty").unwrap_err();
    assert!(e.to_string().contains("choices"), "{e}");
    assert!(matches!(chat(&url, 100).run(&[0xff]), Err(ExecError::BadInput(_))));
    // Nothing listening.
    let dead = chat("http://127.0.0.1:9/v1", 1000).run(b"x").unwrap_err();
    assert!(matches!(dead, ExecError::Failed(_)), "{dead}");
}

fn class(executor: ExecutorKind, rule: ComparisonRule, model_hash: Hash32) -> TaskClass {
    TaskClass {
        name: "c".into(),
        executor,
        model_hash,
        rule,
        replication: 2,
        reward_per_unit: 1,
        max_input_bytes: 100,
        lease_secs: 10,
        reveal_secs: 10,
        objective: Default::default(),
    }
}

#[test]
fn executors_take_only_classes_they_can_honour() {
    let cmd = CommandExecutor {
        program: "cat".into(),
        args: vec![],
        timeout: Duration::from_secs(5),
        max_output_bytes: 100,
    };
    assert_eq!(cmd.run(b"echo").unwrap(), b"echo");
    assert!(can_run(&cmd, &class(ExecutorKind::Command, ComparisonRule::ExactHash, Hash32::ZERO)).is_ok());
    // Exact results satisfy a tolerance too.
    assert!(can_run(
        &cmd,
        &class(ExecutorKind::Command, ComparisonRule::Cosine { min_ppb: 1 }, Hash32::ZERO)
    )
    .is_ok());
    assert!(can_run(&cmd, &class(ExecutorKind::Embedding, ComparisonRule::ExactHash, Hash32::ZERO)).is_err());
    // A pinned model this executor does not have.
    assert!(can_run(&cmd, &class(ExecutorKind::Command, ComparisonRule::ExactHash, Hash32([1; 32]))).is_err());
}

/// An executor that only states its kind and rule.
struct Promises(ComparisonRule);

impl Executor for Promises {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Embedding
    }
    fn rule(&self) -> ComparisonRule {
        self.0
    }
    fn run(&self, _: &[u8]) -> Result<Vec<u8>, ExecError> {
        Ok(Vec::new())
    }
}

#[test]
fn a_class_compared_item_by_item_is_taken_only_by_executors_that_promise_it() {
    let each = |min_ppb, dim| {
        class(ExecutorKind::Embedding, ComparisonRule::CosineEach { min_ppb, dim }, Hash32::ZERO)
    };
    let minilm = Promises(ComparisonRule::CosineEach { min_ppb: 999_900_000, dim: 384 });
    assert!(can_run(&minilm, &each(999_000_000, 384)).is_ok());
    assert!(can_run(&minilm, &each(999_900_000, 384)).is_ok());
    assert!(can_run(&minilm, &each(999_990_000, 384)).is_err(), "stricter than it promises");
    assert!(can_run(&minilm, &each(999_000_000, 512)).is_err(), "items of another width");
    let whole = class(ExecutorKind::Embedding, ComparisonRule::Cosine { min_ppb: 999_000_000 }, Hash32::ZERO);
    assert!(can_run(&minilm, &whole).is_ok(), "normalised items within it put the whole within it");
    let exact = class(ExecutorKind::Embedding, ComparisonRule::ExactHash, Hash32::ZERO);
    assert!(can_run(&minilm, &exact).is_err());
    // An executor that promises only the whole result does not take a per-item class.
    let loose = Promises(ComparisonRule::Cosine { min_ppb: 999_900_000 });
    assert!(can_run(&loose, &each(999_000_000, 384)).is_err());
}
