//! The one place where Rust errors become Python exceptions. The exception
//! classes are defined in Python (`mxg/errors.py`) and looked up here.

use mxg_relay::EngineError;
use pyo3::prelude::*;

fn exception(py: Python<'_>, name: &str, message: String) -> PyErr {
    match py.import("mxg.errors").and_then(|m| m.getattr(name)) {
        Ok(cls) => PyErr::from_type(cls.downcast_into().expect("exception class"), message),
        Err(e) => e,
    }
}

pub fn to_py(py: Python<'_>, err: &EngineError) -> PyErr {
    let name = match err {
        EngineError::Config(_) | EngineError::Tls(_) => "EngineConfigError",
        EngineError::Bind { .. } => "ListenError",
        EngineError::Spool(mxg_spool::SpoolError::NotFound(_)) => "MessageNotFound",
        EngineError::Spool(_) | EngineError::Io(_) => "SpoolError",
        EngineError::Job(_) => "JobError",
        EngineError::Stopped => "EngineStopped",
    };
    exception(py, name, err.to_string())
}
