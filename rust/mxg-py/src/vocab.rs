//! The shared vocabulary and the DANE usability rule, for the control
//! plane to use instead of keeping copies of its own.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Every level (in order), method, status and reason as JSON, with the
/// reasons each predicate holds for (`mxg_relay::vocabulary`). The
/// control plane's `mxg/vocab.py` is tested against it.
#[pyfunction]
pub fn vocabulary() -> String {
    mxg_relay::vocabulary().to_string()
}

/// Whether a TLSA record set (JSON list of `{usage, selector, mtype,
/// data}`, as in a job's `hosts[].tlsa`) has a record usable for SMTP
/// (RFC 7672 §3.1: usages 2 and 3, a known selector and matching type,
/// data of the right length). Malformed JSON raises `ValueError`.
#[pyfunction]
pub fn tlsa_usable(records_json: &str) -> PyResult<bool> {
    let records: Vec<mxg_dane::Tlsa> = serde_json::from_str(records_json)
        .map_err(|e| PyValueError::new_err(format!("TLSA records: {e}")))?;
    Ok(mxg_dane::usable(&records))
}
