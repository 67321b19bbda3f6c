//! [`ServerConfig`], the shared [`AppState`] of the routes, and [`ServerBuilder`], which
//! assembles them (and is how another axum application mounts the API).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use tokenspeed_scheduler::SamplingParams;
use tokio::sync::Semaphore;

use crate::generator::Generator;
use crate::metrics::Metrics;
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use crate::tool_parser::ToolParserKind;

/// Server options (the HTTP-side flags of `tokenspeed serve`). Its `Debug` form hides the
/// API key, so logging the config cannot leak it.
#[derive(Clone)]
pub struct ServerConfig {
    /// The name clients pass as `model`.
    pub served_model_name: String,
    /// Most tokens (prompt + output) per request; longer prompts get 400.
    pub max_model_len: usize,
    /// Required `Authorization: Bearer` key, if any.
    pub api_key: Option<String>,
    /// Tool-call dialect parsed from outputs of requests with `tools`; `None` disables.
    pub tool_parser: Option<ToolParserKind>,
    /// Split `<think>` reasoning into `reasoning_content`.
    pub reasoning: bool,
    /// Request body limit in bytes (413 above).
    pub max_body_bytes: usize,
    /// Generations (choices) admitted at once, running or queued; more get 429.
    pub max_pending: usize,
    /// Sampling for the fields a request omits (vLLM's `--generation-config auto`: the
    /// model's `generation_config.json` temperature / top-p / top-k / min-p / repetition).
    pub default_sampling: SamplingParams,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("served_model_name", &self.served_model_name)
            .field("max_model_len", &self.max_model_len)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("tool_parser", &self.tool_parser)
            .field("reasoning", &self.reasoning)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_pending", &self.max_pending)
            .field("default_sampling", &self.default_sampling)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            served_model_name: "tokenspeed".into(),
            max_model_len: 32768,
            api_key: None,
            tool_parser: Some(ToolParserKind::QwenXml),
            reasoning: true,
            max_body_bytes: 32 << 20,
            max_pending: 1024,
            default_sampling: SamplingParams::default(),
        }
    }
}

/// What every route handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Options.
    pub config: Arc<ServerConfig>,
    /// The engine.
    pub generator: Arc<dyn Generator>,
    /// The model's tokenizer.
    pub tokenizer: Arc<Tokenizer>,
    /// The chat template.
    pub template: Arc<ChatTemplate>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Admission permits (one per generation).
    pub admission: Arc<Semaphore>,
    next_id: Arc<AtomicU64>,
    /// Unix time the server started.
    pub created: u64,
}

impl AppState {
    /// A fresh engine request id.
    pub fn next_request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Builds the API: `ServerBuilder::new(generator, tokenizer).config(c).router()`.
pub struct ServerBuilder {
    generator: Arc<dyn Generator>,
    tokenizer: Arc<Tokenizer>,
    template: Option<ChatTemplate>,
    config: ServerConfig,
}

impl ServerBuilder {
    /// A builder with the default config and the built-in Qwen3.5 chat template.
    pub fn new(generator: Arc<dyn Generator>, tokenizer: Arc<Tokenizer>) -> Self {
        Self {
            generator,
            tokenizer,
            template: None,
            config: ServerConfig::default(),
        }
    }

    /// Loads the tokenizer and chat template of a model directory (`chat_template` overrides
    /// the template).
    pub fn from_model_dir(
        generator: Arc<dyn Generator>,
        model_dir: &Path,
        chat_template: Option<&Path>,
    ) -> Result<Self, String> {
        let tokenizer = Tokenizer::from_model_dir(model_dir).map_err(|e| e.to_string())?;
        let template =
            ChatTemplate::resolve(Some(model_dir), chat_template).map_err(|e| e.to_string())?;
        Ok(Self::new(generator, Arc::new(tokenizer)).template(template))
    }

    /// Sets the chat template.
    pub fn template(mut self, template: ChatTemplate) -> Self {
        self.template = Some(template);
        self
    }

    /// Sets the options.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// The shared state (to build a router with [`crate::routes::router`]).
    pub fn state(self) -> AppState {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        AppState {
            admission: Arc::new(Semaphore::new(self.config.max_pending)),
            config: Arc::new(self.config),
            generator: self.generator,
            tokenizer: self.tokenizer,
            template: Arc::new(self.template.unwrap_or_else(ChatTemplate::builtin_qwen3_5)),
            metrics: Arc::new(Metrics::default()),
            next_id: Arc::new(AtomicU64::new(1)),
            created,
        }
    }

    /// The API as an axum router (all routes and layers), ready to serve or to nest.
    pub fn router(self) -> Router {
        crate::routes::router(self.state())
    }
}
