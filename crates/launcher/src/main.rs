//! `tokenspeed-server`: the standalone server binary. It embeds CPython through PyO3, registers
//! its own copy of the Rust core as `tokenspeed._core`, and runs the same code path as the
//! `tokenspeed serve` console script (same flags), so the two can never drift apart.
//!
//! The Python side (the `tokenspeed` package with torch and Triton) must be importable by the
//! interpreter this binary links: installed in it, in the virtualenv named by `VIRTUAL_ENV`,
//! or on `PYTHONPATH`.

use std::process::ExitCode;

use pyo3::exceptions::PySystemExit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// Makes the embedded interpreter behave like the `python` of the active virtualenv (if any):
/// its site-packages on `sys.path` and `sys.executable` pointing at a real interpreter, since
/// code that starts `sys.executable -m pip` or subprocesses would otherwise start this binary.
const PREPARE: &std::ffi::CStr = c"
import os, site, sys
venv = os.environ.get('VIRTUAL_ENV')
version = f'python{sys.version_info[0]}.{sys.version_info[1]}'
if venv:
    site.addsitedir(os.path.join(venv, 'lib', version, 'site-packages'))
    sys.executable = os.path.join(venv, 'bin', 'python')
else:
    sys.executable = os.path.join(sys.base_exec_prefix, 'bin', version)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Signal handlers stay with Rust (the server drains on SIGINT/SIGTERM), not Python.
    Python::initialize();
    Python::attach(|py| match run(py, args) {
        Ok(code) => ExitCode::from(code),
        Err(err) => match exit_code(py, &err) {
            Some(code) => ExitCode::from(code),
            None => {
                err.print(py);
                eprintln!(
                    "tokenspeed-server: failed (is the `tokenspeed` Python package installed \
                     for {}? see --help)",
                    python_description(py)
                );
                ExitCode::FAILURE
            }
        },
    })
}

/// Runs `tokenspeed.cli.main(["serve", *args])` with this binary's core as `tokenspeed._core`.
fn run(py: Python<'_>, args: Vec<String>) -> PyResult<u8> {
    py.run(PREPARE, None, None)?;
    let sys = py.import("sys")?;
    let core = pyo3::wrap_pymodule!(_core::_core)(py);
    sys.getattr("modules")?
        .cast_into::<PyDict>()?
        .set_item("tokenspeed._core", core)?;
    let mut argv = vec!["serve".to_string()];
    if args.iter().any(|a| a == "--version") {
        argv = vec!["version".to_string()];
    } else {
        argv.extend(args);
    }
    sys.setattr("argv", PyList::new(py, ["tokenspeed-server".to_string()])?)?;
    let package_version: String = py.import("tokenspeed")?.getattr("__version__")?.extract()?;
    if package_version != env!("CARGO_PKG_VERSION") {
        eprintln!(
            "tokenspeed-server: warning: the Python package is version {package_version}, \
             this binary {}",
            env!("CARGO_PKG_VERSION")
        );
    }
    let code: i64 = py
        .import("tokenspeed.cli")?
        .getattr("main")?
        .call1((argv,))?
        .extract()?;
    Ok(u8::try_from(code).unwrap_or(1))
}

/// The exit code of a `SystemExit` (argparse's `--help` and usage errors), if `err` is one.
fn exit_code(py: Python<'_>, err: &PyErr) -> Option<u8> {
    if !err.is_instance_of::<PySystemExit>(py) {
        return None;
    }
    let code = err.value(py).getattr("code").ok()?;
    if code.is_none() {
        return Some(0);
    }
    Some(
        code.extract::<i64>()
            .map_or(1, |c| u8::try_from(c).unwrap_or(1)),
    )
}

fn python_description(py: Python<'_>) -> String {
    let version = Python::version_str()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string();
    let prefix = py
        .import("sys")
        .and_then(|s| s.getattr("prefix"))
        .map_or_else(|_| "?".to_string(), |p| p.to_string());
    format!("Python {version} at {prefix}")
}
