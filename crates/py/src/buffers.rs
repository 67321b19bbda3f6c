//! Flat arrays across the language boundary as `bytes` in native byte order: one copy, no
//! per-element Python objects (Python views them with `numpy.frombuffer`). The workspace
//! forbids `unsafe`, so the buffer protocol is not implemented directly.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A plain number that travels as its native-endian bytes.
pub trait Scalar: Copy {
    /// Width in bytes.
    const SIZE: usize;
    /// Writes `self` into `out` (exactly `SIZE` bytes).
    fn write(self, out: &mut [u8]);
    /// Reads a value from `bytes` (exactly `SIZE` bytes).
    fn read(bytes: &[u8]) -> Self;
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn write(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_ne_bytes());
            }
            fn read(bytes: &[u8]) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(bytes);
                <$t>::from_ne_bytes(raw)
            }
        }
    )*};
}
scalar!(u32, i32, u64, i64, f32);

impl Scalar for bool {
    const SIZE: usize = 1;
    fn write(self, out: &mut [u8]) {
        out[0] = u8::from(self);
    }
    fn read(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
}

/// `values` as a `bytes` object.
pub fn to_bytes<'py, T: Scalar>(py: Python<'py>, values: &[T]) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, values.len() * T::SIZE, |buf| {
        for (out, &v) in buf.chunks_exact_mut(T::SIZE).zip(values) {
            v.write(out);
        }
        Ok(())
    })
}

/// Decodes a `bytes`-like object of `T`s; `what` names it in the error.
pub fn from_bytes<T: Scalar>(data: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<T>> {
    let bytes: Vec<u8> = data
        .extract()
        .map_err(|_| PyValueError::new_err(format!("{what}: expected bytes")))?;
    if !bytes.len().is_multiple_of(T::SIZE) {
        return Err(PyValueError::new_err(format!(
            "{what}: {} bytes is not a whole number of {}-byte values",
            bytes.len(),
            T::SIZE
        )));
    }
    Ok(bytes.chunks_exact(T::SIZE).map(T::read).collect())
}
