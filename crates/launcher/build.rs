//! Records the directory of the `libpython` this binary links as its run-time search path, so
//! that it starts the same interpreter (with its site-packages) it was built against rather
//! than whichever `libpython3.x.so` the system loader finds first.

fn main() {
    let config = pyo3_build_config::get();
    if let Some(lib_dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{lib_dir}");
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
