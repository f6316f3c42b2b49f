//! The one place where Rust errors become Python exceptions. The exception
//! classes are defined in Python (`mxg/errors.py`) and declared here as
//! types: pyo3 imports each once, on first use, and a class missing from
//! `mxg.errors` shows as a panic naming it rather than as whatever error
//! happened to be raised.

use mxg_relay::EngineError;
use pyo3::prelude::*;

pyo3::import_exception!(mxg.errors, EngineConfigError);
pyo3::import_exception!(mxg.errors, ListenError);
pyo3::import_exception!(mxg.errors, MessageNotFound);
pyo3::import_exception!(mxg.errors, SpoolError);
pyo3::import_exception!(mxg.errors, JobError);
pyo3::import_exception!(mxg.errors, EngineStopped);

pub fn to_py(err: &EngineError) -> PyErr {
    let message = err.to_string();
    match err {
        EngineError::Config(_) | EngineError::Tls(_) => EngineConfigError::new_err(message),
        EngineError::Bind { .. } => ListenError::new_err(message),
        EngineError::Spool(mxg_spool::SpoolError::NotFound(_)) => MessageNotFound::new_err(message),
        EngineError::Spool(_) | EngineError::Io(_) => SpoolError::new_err(message),
        EngineError::Job(_) => JobError::new_err(message),
        EngineError::Stopped => EngineStopped::new_err(message),
    }
}
