//! Chat templates: which one a model uses, and rendering a conversation to the prompt text.
//!
//! Rendering matches transformers' `apply_chat_template` byte for byte (see `template_env`),
//! including its input clean-up: `reasoning` / `thinking` are aliased to `reasoning_content`.
//! Tool-call `arguments` sent as a JSON string (the OpenAI wire format) are parsed into an
//! object first, since templates iterate over them (`arguments|items`).

use crate::template_env::chat_environment;
use minijinja::Value;
use serde_json::{Map, Value as Json};
use std::path::{Path, PathBuf};

/// The official Qwen3.5 chat template, used for models that ship none.
pub const BUILTIN_QWEN3_5_TEMPLATE: &str = include_str!("../templates/qwen3_5_chat_template.jinja");

/// Special-token names that transformers passes to every template.
const SPECIAL_TOKEN_KEYS: [&str; 4] = ["bos_token", "eos_token", "pad_token", "unk_token"];
/// Variables the renderer sets itself; `chat_template_kwargs` may not override them.
const RESERVED: [&str; 4] = ["messages", "tools", "documents", "add_generation_prompt"];

/// Why a template could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A template file (or `tokenizer_config.json`) could not be read or parsed.
    #[error("cannot read chat template from {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The template is not valid Jinja.
    #[error("chat template from {origin} does not compile: {message}")]
    Syntax {
        /// Where the template came from.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// The request's messages, tools or kwargs are not what a template can take.
    #[error("invalid chat input: {0}")]
    Input(String),
    /// Rendering failed, e.g. the template's `raise_exception("No user query found...")`.
    #[error("chat template error: {0}")]
    Render(String),
}

/// Where a [`ChatTemplate`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateOrigin {
    /// `--chat-template FILE`.
    Override(PathBuf),
    /// The model directory's `chat_template.jinja`.
    ModelFile(PathBuf),
    /// The `chat_template` field of the model's `tokenizer_config.json`.
    TokenizerConfig(PathBuf),
    /// [`BUILTIN_QWEN3_5_TEMPLATE`].
    Builtin,
}

impl std::fmt::Display for TemplateOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Override(p) | Self::ModelFile(p) | Self::TokenizerConfig(p) => {
                write!(f, "{}", p.display())
            }
            Self::Builtin => write!(f, "the built-in Qwen3.5 template"),
        }
    }
}

/// What to render: the request's conversation and options.
#[derive(Debug, Clone, Copy)]
pub struct ChatInput<'a> {
    /// OpenAI-style messages (objects with `role`, `content`, `tool_calls`, ...).
    pub messages: &'a [Json],
    /// Tool definitions, passed to the template as given.
    pub tools: Option<&'a [Json]>,
    /// Open an assistant turn at the end.
    pub add_generation_prompt: bool,
    /// Extra template variables (`enable_thinking`, ...).
    pub kwargs: Option<&'a Map<String, Json>>,
}

/// A compiled chat template plus the special tokens transformers would pass to it.
#[derive(Debug)]
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    origin: TemplateOrigin,
    special_tokens: Map<String, Json>,
}

impl ChatTemplate {
    /// Compiles template source text.
    pub fn from_source(source: String, origin: TemplateOrigin) -> Result<Self, TemplateError> {
        let mut env = chat_environment();
        env.add_template_owned("chat", source)
            .map_err(|e| TemplateError::Syntax {
                origin: origin.to_string(),
                message: format!("{e:#}"),
            })?;
        Ok(Self {
            env,
            origin,
            special_tokens: Map::new(),
        })
    }

    /// The built-in Qwen3.5 template.
    pub fn builtin_qwen3_5() -> Self {
        Self::from_source(
            BUILTIN_QWEN3_5_TEMPLATE.to_string(),
            TemplateOrigin::Builtin,
        )
        .expect("the built-in template compiles (checked by a unit test)")
    }

    /// Picks the template in this order: `override_file`, the model dir's `chat_template.jinja`,
    /// its `tokenizer_config.json` `chat_template` (a string, or the `default` entry of a named
    /// list), the built-in Qwen3.5 template. Special tokens come from `tokenizer_config.json`.
    pub fn resolve(
        model_dir: Option<&Path>,
        override_file: Option<&Path>,
    ) -> Result<Self, TemplateError> {
        let config_path = model_dir.map(|d| d.join("tokenizer_config.json"));
        let config = match &config_path {
            Some(path) if path.exists() => Some(read_json(path)?),
            _ => None,
        };
        let model_file = model_dir
            .map(|d| d.join("chat_template.jinja"))
            .filter(|p| p.exists());
        let mut template = if let Some(path) = override_file {
            Self::from_source(
                read_text(path)?,
                TemplateOrigin::Override(path.to_path_buf()),
            )?
        } else if let Some(path) = model_file {
            Self::from_source(read_text(&path)?, TemplateOrigin::ModelFile(path))?
        } else if let Some(source) = config
            .as_ref()
            .and_then(|c| config_template(c, config_path.as_deref()))
        {
            let path = config_path.clone().unwrap_or_default();
            Self::from_source(source?, TemplateOrigin::TokenizerConfig(path))?
        } else {
            Self::builtin_qwen3_5()
        };
        if let Some(config) = &config {
            template.special_tokens = special_tokens(config);
        }
        Ok(template)
    }

    /// Where this template came from.
    pub fn origin(&self) -> &TemplateOrigin {
        &self.origin
    }

    /// Renders the prompt text.
    pub fn render(&self, input: &ChatInput<'_>) -> Result<String, TemplateError> {
        let messages = prepare_messages(input.messages)?;
        let mut context = self.special_tokens.clone();
        for (key, value) in input.kwargs.into_iter().flatten() {
            if RESERVED.contains(&key.as_str()) {
                return Err(TemplateError::Input(format!(
                    "chat_template_kwargs may not set '{key}' (it is a request field)"
                )));
            }
            context.insert(key.clone(), value.clone());
        }
        context.insert("messages".into(), Json::Array(messages));
        context.insert(
            "tools".into(),
            input.tools.map_or(Json::Null, |t| Json::Array(t.to_vec())),
        );
        context.insert("documents".into(), Json::Null);
        context.insert(
            "add_generation_prompt".into(),
            Json::Bool(input.add_generation_prompt),
        );
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| TemplateError::Render(e.to_string()))?;
        template
            .render(Value::from_serialize(&context))
            .map_err(|e| {
                TemplateError::Render(e.detail().map_or_else(|| format!("{e:#}"), str::to_string))
            })
    }
}

/// Checks the messages and applies transformers' and OpenAI's input conventions.
fn prepare_messages(messages: &[Json]) -> Result<Vec<Json>, TemplateError> {
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let Json::Object(message) = message else {
                return Err(TemplateError::Input(format!(
                    "messages[{i}] is not an object"
                )));
            };
            let mut message = alias_reasoning(message);
            if let Some(Json::Array(calls)) = message.get_mut("tool_calls") {
                for (j, call) in calls.iter_mut().enumerate() {
                    let target = match call.get("function") {
                        Some(_) => call.get_mut("function"),
                        None => Some(call),
                    };
                    if let Some(Json::Object(function)) = target {
                        parse_arguments(function).map_err(|e| {
                            TemplateError::Input(format!(
                                "messages[{i}].tool_calls[{j}] arguments: {e}"
                            ))
                        })?;
                    }
                }
            }
            Ok(Json::Object(message))
        })
        .collect()
}

/// transformers' `_alias_reasoning_fields`: `{"thinking": r, **message, "reasoning_content": r}`
/// where `r` is the first non-null of `reasoning_content`, `thinking`, `reasoning`.
fn alias_reasoning(message: &Map<String, Json>) -> Map<String, Json> {
    let reasoning = ["reasoning_content", "thinking", "reasoning"]
        .iter()
        .find_map(|key| message.get(*key).filter(|v| !v.is_null()))
        .cloned();
    let Some(reasoning) = reasoning else {
        return message.clone();
    };
    let mut aliased = Map::new();
    aliased.insert("thinking".into(), reasoning.clone());
    aliased.extend(message.clone());
    aliased.insert("reasoning_content".into(), reasoning);
    aliased
}

/// `"arguments": "{\"city\": \"Paris\"}"` -> `"arguments": {"city": "Paris"}`.
fn parse_arguments(function: &mut Map<String, Json>) -> Result<(), String> {
    if let Some(Json::String(text)) = function.get("arguments") {
        let parsed = match serde_json::from_str::<Json>(text) {
            Ok(Json::Object(object)) => Json::Object(object),
            Ok(_) => return Err("a JSON string must hold a JSON object".into()),
            Err(e) => return Err(format!("not valid JSON ({e})")),
        };
        function.insert("arguments".into(), parsed);
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String, TemplateError> {
    std::fs::read_to_string(path).map_err(|e| TemplateError::Read {
        path: path.into(),
        message: e.to_string(),
    })
}

fn read_json(path: &Path) -> Result<Json, TemplateError> {
    serde_json::from_str(&read_text(path)?).map_err(|e| TemplateError::Read {
        path: path.into(),
        message: e.to_string(),
    })
}

/// The `chat_template` entry of a tokenizer config: a string, or `[{"name", "template"}]`.
fn config_template(config: &Json, path: Option<&Path>) -> Option<Result<String, TemplateError>> {
    match config.get("chat_template")? {
        Json::String(source) => Some(Ok(source.clone())),
        Json::Array(named) => {
            let default = named
                .iter()
                .find(|t| t.get("name").and_then(Json::as_str) == Some("default"));
            let source = default
                .and_then(|t| t.get("template"))
                .and_then(Json::as_str);
            Some(
                source
                    .map(str::to_string)
                    .ok_or_else(|| TemplateError::Read {
                        path: path.unwrap_or(Path::new("tokenizer_config.json")).into(),
                        message: "chat_template list has no entry named 'default'".into(),
                    }),
            )
        }
        _ => None,
    }
}

/// `bos_token` etc. as strings (configs store either the string or an `{"content": ...}` object).
fn special_tokens(config: &Json) -> Map<String, Json> {
    SPECIAL_TOKEN_KEYS
        .iter()
        .filter_map(|key| {
            let value = config.get(*key)?;
            let text = value
                .as_str()
                .or_else(|| value.get("content").and_then(Json::as_str))?;
            Some((key.to_string(), Json::String(text.to_string())))
        })
        .collect()
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
