//! `tokenspeed._core.serve`: runs the OpenAI-compatible HTTP server in this process over an
//! engine built from Python, until SIGINT/SIGTERM.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokenspeed_scheduler::{RequestSpec, SamplingParams};
use tokenspeed_server::tool_parser::ToolParserKind;
use tokenspeed_server::{EngineGenerator, Generator, MetaFactory, ServerBuilder, ServerConfig};

use crate::engine::Engine;

/// Builds the executor payload of a request by calling `make_meta(prompt, params)` in Python.
fn meta_factory(make_meta: Py<PyAny>) -> MetaFactory<Py<PyAny>> {
    Arc::new(move |spec: &RequestSpec| {
        Python::attach(|py| {
            let s = &spec.sampling;
            let params = PyDict::new(py);
            let set = |k: &str, v: Bound<'_, PyAny>| params.set_item(k, v);
            let fill = || -> PyResult<()> {
                set("temperature", s.temperature.into_pyobject(py)?.into_any())?;
                set("top_p", s.top_p.into_pyobject(py)?.into_any())?;
                set("top_k", s.top_k.into_pyobject(py)?.into_any())?;
                set("min_p", s.min_p.into_pyobject(py)?.into_any())?;
                set(
                    "presence_penalty",
                    s.presence_penalty.into_pyobject(py)?.into_any(),
                )?;
                set(
                    "frequency_penalty",
                    s.frequency_penalty.into_pyobject(py)?.into_any(),
                )?;
                set(
                    "repetition_penalty",
                    s.repetition_penalty.into_pyobject(py)?.into_any(),
                )?;
                set("seed", s.seed.into_pyobject(py)?.into_any())?;
                set(
                    "max_tokens",
                    spec.max_new_tokens.into_pyobject(py)?.into_any(),
                )?;
                set("min_tokens", spec.min_tokens.into_pyobject(py)?.into_any())?;
                let bias = PyDict::new(py);
                for &(token, value) in &spec.logit_bias {
                    bias.set_item(token, value)?;
                }
                set("logit_bias", bias.into_any())?;
                set(
                    "ignore_eos",
                    spec.ignore_eos.into_pyobject(py)?.to_owned().into_any(),
                )?;
                set(
                    "stop_token_ids",
                    spec.stop_token_ids.clone().into_pyobject(py)?.into_any(),
                )?;
                Ok(())
            };
            fill().map_err(|e| e.to_string())?;
            make_meta
                .call1(py, (spec.prompt.clone(), params))
                .map_err(|e| format!("building the request for the executor failed: {e}"))
        })
    })
}

/// The server's defaults for omitted sampling fields, from `{field: value}` (the model's
/// generation config); unknown fields are an error, not ignored.
fn sampling_defaults(fields: HashMap<String, f64>) -> PyResult<SamplingParams> {
    let mut params = SamplingParams::default();
    for (name, value) in fields {
        let v = value as f32;
        match name.as_str() {
            "temperature" => params.temperature = v,
            "top_p" => params.top_p = v,
            "top_k" => params.top_k = if value > 0.0 { value as u32 } else { 0 },
            "min_p" => params.min_p = v,
            "repetition_penalty" => params.repetition_penalty = v,
            "presence_penalty" => params.presence_penalty = v,
            "frequency_penalty" => params.frequency_penalty = v,
            other => {
                return Err(PyValueError::new_err(format!(
                    "default_sampling: unknown field '{other}'"
                )))
            }
        }
    }
    Ok(params)
}

/// Serves `engine` (which the server takes over) over HTTP until SIGINT/SIGTERM, then drains
/// for up to `shutdown_timeout` seconds (new requests get 503; requests still running then
/// end with an error).
/// `make_meta(prompt: list[int], params: dict)` builds each request's executor payload.
#[pyfunction]
#[pyo3(signature = (engine, make_meta, *, model_dir, model_type, host="127.0.0.1".to_string(),
    port=8000, served_model_name, max_model_len, api_key=None, tool_call_parser="auto".to_string(),
    reasoning_parser="auto".to_string(), chat_template=None, max_pending=1024,
    max_body_bytes=32 << 20, shutdown_timeout=30.0, default_sampling=None))]
#[allow(clippy::too_many_arguments)]
pub fn serve(
    py: Python<'_>,
    engine: PyRef<'_, Engine>,
    make_meta: Py<PyAny>,
    model_dir: PathBuf,
    model_type: String,
    host: String,
    port: u16,
    served_model_name: String,
    max_model_len: usize,
    api_key: Option<String>,
    tool_call_parser: String,
    reasoning_parser: String,
    chat_template: Option<PathBuf>,
    max_pending: usize,
    max_body_bytes: usize,
    shutdown_timeout: f64,
    default_sampling: Option<HashMap<String, f64>>,
) -> PyResult<()> {
    let drain_timeout = std::time::Duration::try_from_secs_f64(shutdown_timeout)
        .map_err(|e| PyValueError::new_err(format!("shutdown_timeout: {e}")))?;
    let tool_parser = match tool_call_parser.as_str() {
        "none" => None,
        "auto" => Some(ToolParserKind::for_model_type(&model_type)),
        name => Some(ToolParserKind::from_str(name).map_err(PyValueError::new_err)?),
    };
    let reasoning = match reasoning_parser.as_str() {
        "none" => false,
        "auto" | "qwen3" | "deepseek_r1" => true,
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown reasoning parser '{other}' (expected auto, qwen3 or none)"
            )))
        }
    };
    let config = ServerConfig {
        served_model_name,
        max_model_len,
        api_key,
        tool_parser,
        reasoning,
        max_body_bytes,
        max_pending,
        default_sampling: sampling_defaults(default_sampling.unwrap_or_default())?,
    };
    let generator = Arc::new(EngineGenerator::new(
        engine.take()?,
        meta_factory(make_meta),
    ));
    drop(engine);
    let shared: Arc<dyn Generator> = generator.clone();
    let builder = ServerBuilder::from_model_dir(shared, &model_dir, chat_template.as_deref())
        .map_err(PyValueError::new_err)?
        .config(config);
    let stopper = Arc::clone(&generator);
    let drain = tokenspeed_server::serve::Drain {
        timeout: drain_timeout,
        on_timeout: Some(Box::new(move || {
            stopper.stop("the server is shutting down")
        })),
    };
    // The engine thread and the request handlers take the GIL themselves: release it here.
    py.detach(move || {
        let result = tokenspeed_server::serve::serve_blocking_with(&host, port, drain, move || {
            builder.router()
        });
        if let Ok(generator) = Arc::try_unwrap(generator) {
            generator.shutdown();
        }
        result.map_err(PyRuntimeError::new_err)
    })
}
