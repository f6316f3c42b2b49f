//! `mxg._core.scan`: the content scanner (crate mxg-classify) for the
//! control plane's classification. Bytes and JSON text in, JSON text out.

use std::sync::{Arc, Mutex};

use mxg_classify::{ScanOptions, Scanner};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The scanner compiled for the options last seen. The control plane sends
/// the same options with every message; compiling keyword automata and
/// regexes anew for each would cost more than many scans.
static LAST: Mutex<Option<(String, Arc<Scanner>)>> = Mutex::new(None);

fn scanner(options_json: &str) -> Result<Arc<Scanner>, mxg_classify::ScanError> {
    if let Ok(last) = LAST.lock() {
        if let Some((json, scanner)) = last.as_ref() {
            if json == options_json {
                return Ok(Arc::clone(scanner));
            }
        }
    }
    let scanner = Arc::new(ScanOptions::from_json(options_json)?.compile()?);
    if let Ok(mut last) = LAST.lock() {
        *last = Some((options_json.to_owned(), Arc::clone(&scanner)));
    }
    Ok(scanner)
}

/// Scans one message (RFC 5322 octets) with the scan options (JSON);
/// returns the features as JSON. Bad options raise `ValueError`. The GIL
/// is released while compiling and scanning.
#[pyfunction]
pub fn scan(py: Python<'_>, message: &[u8], options_json: &str) -> PyResult<String> {
    let features = py
        .allow_threads(|| scanner(options_json).map(|s| s.scan(message)))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(serde_json::to_string(&features).expect("features serialise"))
}
