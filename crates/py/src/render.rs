//! `tokenspeed._core.ChatFrontend`: the server's chat-template renderer and tokenizer for
//! Python (`LLM.chat`), so offline and served prompts are built by the same code.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use serde_json::Value as Json;
use tokenspeed_server::template::{ChatInput, ChatTemplate};
use tokenspeed_server::tokenizer::Tokenizer;
use tokenspeed_server::validate;

/// The tokenizer and chat template of a model directory.
#[pyclass(frozen, module = "tokenspeed._core")]
pub struct ChatFrontend {
    tokenizer: Tokenizer,
    template: ChatTemplate,
}

fn invalid(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn parse_list(what: &str, text: &str) -> PyResult<Vec<Json>> {
    match serde_json::from_str(text).map_err(|e| invalid(format!("{what}: {e}")))? {
        Json::Array(items) => Ok(items),
        _ => Err(invalid(format!("{what} must be a list"))),
    }
}

#[pymethods]
impl ChatFrontend {
    /// Loads `tokenizer.json` and the chat template of `model_dir` (`chat_template`, a file,
    /// overrides it; without either the built-in Qwen3.5 template is used).
    #[new]
    #[pyo3(signature = (model_dir, chat_template=None))]
    fn new(model_dir: PathBuf, chat_template: Option<PathBuf>) -> PyResult<Self> {
        let tokenizer = Tokenizer::from_model_dir(&model_dir).map_err(invalid)?;
        let template =
            ChatTemplate::resolve(Some(&model_dir), chat_template.as_deref()).map_err(invalid)?;
        Ok(Self {
            tokenizer,
            template,
        })
    }

    /// Renders a conversation (JSON text of OpenAI-style messages, tools and template kwargs)
    /// with the same checks as `/v1/chat/completions`.
    #[pyo3(signature = (messages_json, tools_json=None, kwargs_json=None, add_generation_prompt=true))]
    fn render(
        &self,
        py: Python<'_>,
        messages_json: &str,
        tools_json: Option<&str>,
        kwargs_json: Option<&str>,
        add_generation_prompt: bool,
    ) -> PyResult<String> {
        let messages = parse_list("messages", messages_json)?;
        let tools = tools_json.map(|t| parse_list("tools", t)).transpose()?;
        let kwargs = match kwargs_json
            .map(serde_json::from_str::<Json>)
            .transpose()
            .map_err(|e| invalid(format!("chat_template_kwargs: {e}")))?
        {
            None | Some(Json::Null) => None,
            Some(Json::Object(map)) => Some(map),
            Some(_) => return Err(invalid("chat_template_kwargs must be a dict")),
        };
        validate::messages(&messages).map_err(invalid)?;
        if let Some(tools) = &tools {
            validate::tools(tools).map_err(invalid)?;
        }
        py.detach(|| {
            self.template.render(&ChatInput {
                messages: &messages,
                tools: tools.as_deref(),
                add_generation_prompt,
                kwargs: kwargs.as_ref(),
            })
        })
        .map_err(invalid)
    }

    /// Token ids of `text` (special-token markup in the text becomes special tokens).
    #[pyo3(signature = (text, add_special_tokens=false))]
    fn encode(&self, py: Python<'_>, text: &str, add_special_tokens: bool) -> PyResult<Vec<u32>> {
        py.detach(|| self.tokenizer.encode(text, add_special_tokens))
            .map_err(invalid)
    }

    /// Text of `ids`.
    #[pyo3(signature = (ids, skip_special_tokens=true))]
    fn decode(&self, ids: Vec<u32>, skip_special_tokens: bool) -> PyResult<String> {
        self.tokenizer
            .decode(&ids, skip_special_tokens)
            .map_err(invalid)
    }

    /// Where the template came from (a path, or the built-in one).
    #[getter]
    fn template_origin(&self) -> String {
        self.template.origin().to_string()
    }
}
