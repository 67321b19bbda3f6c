//! `tokenspeed._core`: the Rust core exposed to Python (abi3, one `.so` for CPython 3.11+).

use pyo3::prelude::*;

/// Version of the Rust core, equal to the Python package version.
#[pyfunction]
fn core_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(core_version, m)?)?;
    Ok(())
}
