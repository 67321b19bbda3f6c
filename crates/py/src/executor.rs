//! [`PyExecutor`]: the engine's [`Executor`] backed by a Python object with
//! `launch(plan: dict) -> None` and `collect(step: int) -> tuple`. The GIL is taken only for
//! these two calls.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use tokenspeed_engine::{Executor, ExecutorError, Launch, StepOutput};
use tokenspeed_scheduler::StepPlan;

use crate::buffers::{from_bytes, to_bytes};

/// A Python executor object (see `tokenspeed.executor.Executor`).
pub struct PyExecutor {
    obj: Py<PyAny>,
}

impl PyExecutor {
    /// Wraps `obj`.
    pub fn new(obj: Py<PyAny>) -> Self {
        Self { obj }
    }
}

/// A Python exception as an executor error (the traceback goes to stderr). Fatal when the
/// exception says so (`fatal = True` attribute) or is a CUDA error, which leaves the device
/// context unusable.
fn py_error(py: Python<'_>, err: PyErr, call: &str) -> ExecutorError {
    let message = err.to_string();
    let marked = err
        .value(py)
        .getattr("fatal")
        .and_then(|f| f.is_truthy())
        .unwrap_or(false);
    err.print(py);
    let message = format!("{call} raised {message}");
    if marked || message.contains("CUDA error") {
        ExecutorError::fatal(message)
    } else {
        ExecutorError::new(message)
    }
}

/// The plan's arrays as a dict of `bytes` (dtype in the key's documentation on the Python
/// side), plus step metadata.
fn plan_dict<'py>(py: Python<'py>, work: &Launch<'_, Py<PyAny>>) -> PyResult<Bound<'py, PyDict>> {
    let plan: &StepPlan = work.plan;
    let d = PyDict::new(py);
    d.set_item("step", plan.step)?;
    d.set_item("request_ids", to_bytes(py, &plan.request_ids)?)?;
    d.set_item("num_cached", to_bytes(py, &plan.num_cached)?)?;
    d.set_item("working_slots", to_bytes(py, &plan.working_slots)?)?;
    d.set_item("cow_src_slots", to_bytes(py, &plan.cow_src_slots)?)?;
    d.set_item("checkpoint_slots", to_bytes(py, &plan.checkpoint_slots)?)?;
    d.set_item(
        "checkpoint_offsets",
        to_bytes(py, &plan.checkpoint_offsets)?,
    )?;
    d.set_item("input_ids", to_bytes(py, &plan.input_ids)?)?;
    d.set_item("positions", to_bytes(py, &plan.positions)?)?;
    d.set_item("cu_seqlens", to_bytes(py, &plan.cu_seqlens)?)?;
    d.set_item("page_table", to_bytes(py, &plan.page_table)?)?;
    d.set_item("cu_pages", to_bytes(py, &plan.cu_pages)?)?;
    d.set_item("prev_token_dst", to_bytes(py, &plan.prev_token_dst)?)?;
    d.set_item("prev_token_src", to_bytes(py, &plan.prev_token_src)?)?;
    d.set_item("copy_src", to_bytes(py, &plan.copy_src)?)?;
    d.set_item("copy_dst", to_bytes(py, &plan.copy_dst)?)?;
    d.set_item("zero_slots", to_bytes(py, &plan.zero_slots)?)?;
    d.set_item("logits_indices", to_bytes(py, &plan.logits_indices)?)?;
    d.set_item("sample_seqs", to_bytes(py, &plan.sample_seqs)?)?;
    let s = &plan.sampling;
    d.set_item("temperature", to_bytes(py, &s.temperature)?)?;
    d.set_item("top_p", to_bytes(py, &s.top_p)?)?;
    d.set_item("top_k", to_bytes(py, &s.top_k)?)?;
    d.set_item("min_p", to_bytes(py, &s.min_p)?)?;
    d.set_item("presence_penalty", to_bytes(py, &s.presence_penalty)?)?;
    d.set_item("frequency_penalty", to_bytes(py, &s.frequency_penalty)?)?;
    d.set_item("repetition_penalty", to_bytes(py, &s.repetition_penalty)?)?;
    d.set_item("seed", to_bytes(py, &s.seed)?)?;
    d.set_item("num_logprobs", to_bytes(py, work.num_logprobs)?)?;
    d.set_item("released", to_bytes(py, work.released)?)?;
    let admitted = PyList::empty(py);
    for a in &work.admitted {
        let entry = (a.id, a.meta.clone_ref(py), to_bytes(py, &a.output)?);
        admitted.append(entry)?;
    }
    d.set_item("admitted", admitted)?;
    Ok(d)
}

/// Parses `(sampled u32, logprobs f32, top_k, top_ids u32, top_logprobs f32)`.
fn parse_output(out: &Bound<'_, PyAny>) -> PyResult<StepOutput> {
    let t = out.cast::<PyTuple>().map_err(PyErr::from)?;
    if t.len() != 5 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "collect() must return 5 items (sampled, logprobs, top_k, top_ids, top_logprobs), \
             got {}",
            t.len()
        )));
    }
    Ok(StepOutput {
        sampled: from_bytes(&t.get_item(0)?, "collect()[0] sampled")?,
        logprobs: from_bytes(&t.get_item(1)?, "collect()[1] logprobs")?,
        top_k: t.get_item(2)?.extract()?,
        top_ids: from_bytes(&t.get_item(3)?, "collect()[3] top_ids")?,
        top_logprobs: from_bytes(&t.get_item(4)?, "collect()[4] top_logprobs")?,
    })
}

impl Executor for PyExecutor {
    type Meta = Py<PyAny>;

    fn launch(&mut self, work: Launch<'_, Py<PyAny>>) -> Result<(), ExecutorError> {
        Python::attach(|py| {
            let plan = plan_dict(py, &work).map_err(|e| py_error(py, e, "building the plan"))?;
            self.obj
                .call_method1(py, "launch", (plan,))
                .map_err(|e| py_error(py, e, "launch()"))?;
            Ok(())
        })
    }

    fn collect(&mut self, step: u64) -> Result<StepOutput, ExecutorError> {
        Python::attach(|py| {
            let out = self
                .obj
                .call_method1(py, "collect", (step,))
                .map_err(|e| py_error(py, e, "collect()"))?;
            parse_output(out.bind(py)).map_err(|e| py_error(py, e, "collect() result"))
        })
    }

    fn reset(&mut self) -> Result<(), ExecutorError> {
        Python::attach(|py| {
            let obj = self.obj.bind(py);
            if !obj.hasattr("reset").unwrap_or(false) {
                return Err(ExecutorError::fatal("the executor has no reset()"));
            }
            obj.call_method0("reset")
                .map_err(|e| py_error(py, e, "reset()"))?;
            Ok(())
        })
    }
}
