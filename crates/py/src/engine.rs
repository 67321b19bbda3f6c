//! `tokenspeed._core.Engine` and `tokenspeed._core.RequestStream`: the Rust engine thread
//! (scheduler + loop) driving a Python executor, seen from Python.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use tokenspeed_cache::{PagePool, RadixCache, StatePool};
use tokenspeed_engine::{Engine as RustEngine, EngineOptions, RequestEvent, Submission};
use tokenspeed_scheduler::{
    FinishReason, RequestError, RequestSpec, SamplingParams, Scheduler, SchedulerConfig,
};

use crate::executor::PyExecutor;

fn runtime_error(e: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

/// The engine: a Rust thread owning the scheduler and calling `executor.launch(plan)` /
/// `executor.collect(step)`; requests are submitted from any Python thread.
#[pyclass(module = "tokenspeed._core")]
pub struct Engine {
    inner: Mutex<Option<RustEngine<Py<PyAny>>>>,
}

impl Engine {
    /// Moves the engine out of this handle (the HTTP server takes ownership; the handle then
    /// reports "shut down").
    pub(crate) fn take(&self) -> PyResult<RustEngine<Py<PyAny>>> {
        let mut guard = self.inner.lock().map_err(runtime_error)?;
        guard
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("the engine was shut down"))
    }

    fn with<R>(&self, f: impl FnOnce(&RustEngine<Py<PyAny>>) -> PyResult<R>) -> PyResult<R> {
        let guard = self.inner.lock().map_err(runtime_error)?;
        match guard.as_ref() {
            Some(engine) => f(engine),
            None => Err(PyRuntimeError::new_err("the engine was shut down")),
        }
    }
}

#[pymethods]
impl Engine {
    /// Builds the pools (`num_pages` / `num_slots` include the reserved page 0 / slot 0), the
    /// radix cache and the scheduler, and starts the engine thread.
    #[new]
    #[pyo3(signature = (executor, *, num_pages, page_size, num_slots, max_running,
        max_step_tokens, max_context, eos_token_ids, overlap=true, prefix_caching=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        executor: Py<PyAny>,
        num_pages: usize,
        page_size: usize,
        num_slots: usize,
        max_running: usize,
        max_step_tokens: usize,
        max_context: usize,
        eos_token_ids: Vec<u32>,
        overlap: bool,
        prefix_caching: bool,
    ) -> PyResult<Self> {
        let bad = |e: &dyn std::fmt::Display| PyValueError::new_err(e.to_string());
        let pages = PagePool::new(num_pages, page_size).map_err(|e| bad(&e))?;
        let slots = StatePool::new(num_slots).map_err(|e| bad(&e))?;
        let config = SchedulerConfig {
            max_running,
            max_step_tokens,
            max_context,
            eos_token_ids,
        };
        let mut scheduler =
            Scheduler::new(config, RadixCache::new(pages, slots)).map_err(|e| bad(&e))?;
        scheduler.set_prefix_caching(prefix_caching);
        let engine = RustEngine::spawn(
            scheduler,
            PyExecutor::new(executor),
            EngineOptions { overlap },
        )
        .map_err(runtime_error)?;
        Ok(Self {
            inner: Mutex::new(Some(engine)),
        })
    }

    /// Queues a request and returns its event stream. `meta` is handed to the executor when
    /// the request becomes resident.
    #[pyo3(signature = (request_id, prompt, max_tokens, *, temperature=1.0, top_p=1.0, top_k=0,
        min_p=0.0, presence_penalty=0.0, frequency_penalty=0.0, repetition_penalty=1.0,
        seed=None, stop_token_ids=Vec::new(), ignore_eos=false, min_tokens=0, logprobs=None,
        meta=None))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        py: Python<'_>,
        request_id: u64,
        prompt: Vec<u32>,
        max_tokens: usize,
        temperature: f32,
        top_p: f32,
        top_k: u32,
        min_p: f32,
        presence_penalty: f32,
        frequency_penalty: f32,
        repetition_penalty: f32,
        seed: Option<u64>,
        stop_token_ids: Vec<u32>,
        ignore_eos: bool,
        min_tokens: usize,
        logprobs: Option<u32>,
        meta: Option<Py<PyAny>>,
    ) -> PyResult<RequestStream> {
        let spec = RequestSpec {
            id: request_id,
            prompt,
            sampling: SamplingParams {
                temperature,
                top_p,
                top_k,
                min_p,
                presence_penalty,
                frequency_penalty,
                repetition_penalty,
                seed,
            },
            max_new_tokens: max_tokens,
            stop_token_ids,
            ignore_eos,
            min_tokens,
            logit_bias: Vec::new(), // the caller's meta carries it to the executor
        };
        let submission = Submission {
            spec,
            logprobs,
            meta: meta.unwrap_or_else(|| py.None()),
        };
        let receiver = self.with(|e| e.submit(submission).map_err(runtime_error))?;
        Ok(RequestStream {
            receiver: Mutex::new(receiver),
        })
    }

    /// Aborts a request (no-op if it already ended).
    fn abort(&self, request_id: u64) -> PyResult<()> {
        self.with(|e| e.abort(request_id).map_err(runtime_error))
    }

    /// Scheduler occupancy and counters as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        // The engine thread takes the GIL while it may hold the scheduler lock's turn: wait
        // for the lock without the GIL.
        let s = py.detach(|| self.with(|e| Ok(e.stats())))?;
        let d = PyDict::new(py);
        d.set_item("running", s.running)?;
        d.set_item("prefilling", s.prefilling)?;
        d.set_item("decoding", s.decoding)?;
        d.set_item("waiting", s.waiting)?;
        d.set_item("steps_in_flight", s.steps_in_flight)?;
        d.set_item("pages_total", s.pages_total)?;
        d.set_item("pages_used", s.pages_used)?;
        d.set_item("pages_cached", s.pages_cached)?;
        d.set_item("pages_free", s.pages_free)?;
        d.set_item("slots_total", s.slots_total)?;
        d.set_item("slots_used", s.slots_used)?;
        d.set_item("slots_cached", s.slots_cached)?;
        d.set_item("slots_free", s.slots_free)?;
        d.set_item("prefix_hit_tokens", s.prefix_hit_tokens)?;
        d.set_item("prefix_requested_tokens", s.prefix_requested_tokens)?;
        d.set_item("preemptions", s.preemptions)?;
        d.set_item("finished", s.finished)?;
        d.set_item("evicted_pages", s.evicted_pages)?;
        d.set_item("evicted_checkpoints", s.evicted_checkpoints)?;
        Ok(d)
    }

    /// Raises `RuntimeError` if the pools', cache's or scheduler's accounting is broken.
    fn check_integrity(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.with(|e| e.check_integrity().map_err(runtime_error)))
    }

    /// Why the engine thread stopped, or `None` while it runs.
    fn stopped(&self) -> PyResult<Option<String>> {
        self.with(|e| Ok(e.stopped()))
    }

    /// Stops the engine thread and waits for it (idempotent).
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        let engine = self.inner.lock().map_err(runtime_error)?.take();
        if let Some(engine) = engine {
            py.detach(|| engine.shutdown());
        }
        Ok(())
    }
}

/// The events of one request. `next(timeout)` returns what arrived as a list of tuples:
/// `("token", id, logprob | None, [(id, logprob), ...])`,
/// `("finished", reason, stop_token | None, num_cached_tokens)` with reason one of `"stop"`,
/// `"length"`, `"abort"`, `"error"`, or `("failed", message)`.
#[pyclass(module = "tokenspeed._core")]
pub struct RequestStream {
    receiver: Mutex<Receiver<RequestEvent>>,
}

#[pymethods]
impl RequestStream {
    /// Waits up to `timeout` seconds for at least one event, then returns every event
    /// available (an empty list on timeout; `[("failed", ...)]` if the engine is gone).
    #[pyo3(signature = (timeout=0.1))]
    fn next<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Bound<'py, PyList>> {
        let events = py.detach(|| -> PyResult<Vec<RequestEvent>> {
            let receiver = self.receiver.lock().map_err(runtime_error)?;
            let wait = Duration::from_secs_f64(timeout.max(0.0));
            let first = match receiver.recv_timeout(wait) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => return Ok(Vec::new()),
                Err(RecvTimeoutError::Disconnected) => {
                    return Ok(vec![RequestEvent::Failed(
                        "the engine dropped the request".into(),
                    )])
                }
            };
            let mut events = vec![first];
            events.extend(receiver.try_iter());
            Ok(events)
        })?;
        let out = PyList::empty(py);
        for event in events {
            match event {
                RequestEvent::Token(t) => {
                    out.append(("token", t.token, t.logprob, t.top_logprobs))?;
                }
                RequestEvent::Finished {
                    reason,
                    num_cached_tokens,
                } => {
                    let (name, token, detail) = finish_reason(reason);
                    out.append(("finished", name, token, num_cached_tokens, detail))?;
                }
                RequestEvent::Failed(message) => out.append(("failed", message))?,
            }
        }
        Ok(out)
    }
}

/// `(name, stop token, detail)` of a finish reason.
fn finish_reason(reason: FinishReason) -> (&'static str, Option<u32>, Option<String>) {
    match reason {
        FinishReason::Stop { token } => ("stop", token, None),
        FinishReason::Length => ("length", None, None),
        FinishReason::Abort => ("abort", None, None),
        FinishReason::Error(RequestError::OutOfMemory {
            context_tokens,
            pool_pages,
        }) => (
            "error",
            None,
            Some(format!(
                "out of memory: a context of {context_tokens} tokens does not fit in \
                 {pool_pages} KV pages"
            )),
        ),
        FinishReason::Error(e) => ("error", None, Some(format!("{e:?}"))),
    }
}
