//! An OpenAI-compatible chat-completion endpoint as executor (llama.cpp's server, vLLM,
//! Ollama): greedy decoding with a fixed seed, so honest runs of the same model agree.
//!
//! Owns the request it sends and the parsing of the answer. Must never follow the task's
//! data anywhere: the URL and model come from the worker's config; the task's text is only
//! the user message.
//!
//! Task format: the input is the UTF-8 prompt. The result is the assistant message's text,
//! canonical per [`super::canonical_text`].

use std::time::Duration;

use cairn_spec::{ComparisonRule, ExecutorKind, Hash32};
use serde_json::{json, Value};

use super::{canonical_text, ExecError, Executor};

/// Largest response body read from the endpoint.
pub const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// A configured endpoint.
#[derive(Clone, Debug)]
pub struct ChatExecutor {
    /// Base URL up to and including `/v1`, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Model name sent in the request.
    pub model: String,
    /// Sampling seed (with temperature 0 most servers are greedy regardless; the seed pins
    /// the few that are not).
    pub seed: u64,
    /// Most tokens generated.
    pub max_tokens: u32,
    /// Limit on the whole exchange.
    pub timeout: Duration,
    /// Largest result accepted.
    pub max_output_bytes: usize,
}

impl ChatExecutor {
    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .build()
            .into()
    }
}

impl Executor for ChatExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::ChatCompletion
    }

    fn rule(&self) -> ComparisonRule {
        ComparisonRule::ExactHash
    }

    /// The hash of the settings that decide its answers (SPEC.md §5.2): it takes only a class
    /// that pins exactly these.
    fn model_hash(&self) -> Hash32 {
        cairn_spec::task::chat_settings_hash(&self.model, self.seed, self.max_tokens)
    }

    fn run(&self, input: &[u8]) -> Result<Vec<u8>, ExecError> {
        let prompt =
            std::str::from_utf8(input).map_err(|_| ExecError::BadInput("prompt is not UTF-8".into()))?;
        let body = json!({
            "model": self.model,
            "messages": [{ "role": "user", "content": prompt }],
            "temperature": 0,
            "top_p": 1,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "stream": false,
        });
        let url = format!("{}/chat/completions", self.base_url.trim_end_matches('/'));
        let mut resp = self.agent().post(&url).send_json(&body).map_err(|e| match e {
            ureq::Error::Timeout(_) => ExecError::Timeout(self.timeout.as_millis() as u64),
            e => ExecError::Failed(format!("{url}: {e}")),
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|e| ExecError::Failed(format!("{url}: reading the answer: {e}")))?;
        if status != 200 {
            let t: String = text.chars().take(300).collect();
            return Err(ExecError::Failed(format!("{url} answered {status}: {t}")));
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| ExecError::Failed(format!("{url}: answer is not JSON: {e}")))?;
        let content = v.pointer("/choices/0/message/content").and_then(Value::as_str).ok_or_else(|| {
            ExecError::Failed(format!("{url}: no choices[0].message.content in the answer"))
        })?;
        let out = canonical_text(content);
        if out.len() > self.max_output_bytes {
            return Err(ExecError::TooLarge(self.max_output_bytes));
        }
        Ok(out)
    }
}
