//! `tokenspeed._core`: the Rust core exposed to Python (abi3, one `.so` for CPython 3.11+):
//! the engine thread (scheduler + step loop) that drives the Python executor.

use pyo3::prelude::*;

mod buffers;
mod engine;
mod executor;
mod render;
mod serve;

/// Version of the Rust core, equal to the Python package version.
#[pyfunction]
fn core_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The `tokenspeed._core` module (also registered by the `tokenspeed-server` binary).
#[pymodule]
pub fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(core_version, m)?)?;
    m.add_class::<engine::Engine>()?;
    m.add_class::<engine::RequestStream>()?;
    m.add_class::<render::ChatFrontend>()?;
    m.add_function(wrap_pyfunction!(serve::serve, m)?)?;
    Ok(())
}
