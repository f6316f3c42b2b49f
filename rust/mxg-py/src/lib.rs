//! `mxg._core`: the engine as seen from Python. Only plain data crosses:
//! configuration, jobs and events as JSON text, messages as bytes. No
//! Python object is kept by Rust, and the GIL is released around anything
//! that may block (fsync, shutdown).

// pyo3 hands arguments over as owned values.
#![allow(clippy::needless_pass_by_value)]

mod error;
mod scan;
mod vocab;

use error::to_py;
use mxg_relay::{DeliveryJob, Engine as RustEngine, EngineConfig, ProbeJob};
use mxg_spool::Envelope;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::{Arc, Mutex, Weak};

/// Every engine alive in this process, so the interpreter's exit can shut
/// them down cleanly (open transactions finish, idle connections QUIT)
/// even when Python never drops the object.
static LIVE: Mutex<Vec<Weak<RustEngine>>> = Mutex::new(Vec::new());

/// The data plane: inbound server, outbound client and spool.
#[pyclass(frozen, module = "mxg._core")]
struct Engine {
    inner: Arc<RustEngine>,
    /// Process that created the engine. Its runtime threads do not survive
    /// `fork()`, so a child must not use it.
    pid: u32,
}

impl Engine {
    fn check(&self) -> PyResult<&RustEngine> {
        if std::process::id() != self.pid {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this mxg engine was created in another process; its threads do not survive fork(): create a new engine in the child",
            ));
        }
        Ok(&self.inner)
    }
}

#[pymethods]
impl Engine {
    /// Builds the engine from the JSON engine configuration; binds the
    /// listeners and opens the spool, but accepts nothing before `serve()`.
    #[new]
    fn new(py: Python<'_>, config_json: &str) -> PyResult<Self> {
        let cfg = EngineConfig::from_json(config_json).map_err(|e| to_py(&e))?;
        let inner = py
            .allow_threads(|| RustEngine::start(&cfg))
            .map_err(|e| to_py(&e))?;
        let inner = Arc::new(inner);
        let mut live = LIVE.lock().expect("engine registry poisoned");
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&inner));
        Ok(Self {
            inner,
            pid: std::process::id(),
        })
    }

    /// Starts accepting connections.
    fn serve(&self) -> PyResult<()> {
        self.check()?.serve().map_err(|e| to_py(&e))
    }

    /// The descriptor that becomes readable when events are waiting.
    fn fileno(&self) -> PyResult<i32> {
        Ok(self.check()?.event_fd())
    }

    /// All waiting events as one JSON array, UTF-8 encoded: bytes, which
    /// the JSON parsers take as they are, not a str built only to be parsed.
    fn drain(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        let events = self.check()?.drain();
        let json = serde_json::to_vec(&events).expect("events serialise");
        Ok(PyBytes::new(py, &json).unbind())
    }

    /// Submits delivery jobs given as a JSON array.
    fn submit(&self, jobs_json: &str) -> PyResult<()> {
        let engine = self.check()?;
        let jobs: Vec<DeliveryJob> = serde_json::from_str(jobs_json)
            .map_err(|e| to_py(&mxg_relay::EngineError::Job(e.to_string())))?;
        engine.submit(jobs).map_err(|e| to_py(&e))
    }

    /// Hands end-of-DATA verdicts (JSON array) to the waiting sessions;
    /// returns, per verdict, whether its session still waited for it.
    fn verdicts(&self, verdicts_json: &str) -> PyResult<Vec<bool>> {
        let engine = self.check()?;
        let verdicts: Vec<mxg_relay::inbound::Verdict> = serde_json::from_str(verdicts_json)
            .map_err(|e| to_py(&mxg_relay::EngineError::Job(e.to_string())))?;
        Ok(engine.verdicts(verdicts))
    }

    /// Applies a new engine configuration (JSON) to the sessions that
    /// start from now on; returns notes for the log. Listen addresses,
    /// spool, outbound client and shutdown grace stay as started.
    fn reload(&self, py: Python<'_>, config_json: &str) -> PyResult<Vec<String>> {
        let engine = self.check()?;
        let cfg = EngineConfig::from_json(config_json).map_err(|e| to_py(&e))?;
        py.allow_threads(|| engine.reload(&cfg))
            .map_err(|e| to_py(&e))
    }

    /// Probes hosts without sending mail (`mxg check`); the result arrives
    /// as a `probe_done` event.
    fn probe(&self, job_json: &str) -> PyResult<()> {
        let engine = self.check()?;
        let job: ProbeJob = serde_json::from_str(job_json)
            .map_err(|e| to_py(&mxg_relay::EngineError::Job(e.to_string())))?;
        engine.probe(job).map_err(|e| to_py(&e))
    }

    /// Spools a message made by the control plane; returns the envelope
    /// (JSON) with its new queue id once the message is durable.
    fn inject(&self, py: Python<'_>, envelope_json: &str, message: &[u8]) -> PyResult<String> {
        let engine = self.check()?;
        let envelope: Envelope = serde_json::from_str(envelope_json)
            .map_err(|e| to_py(&mxg_relay::EngineError::Job(format!("envelope: {e}"))))?;
        let stored = py
            .allow_threads(|| engine.inject(envelope, message))
            .map_err(|e| to_py(&e))?;
        Ok(serde_json::to_string(&stored).expect("envelope serialises"))
    }

    /// Envelope (JSON) and message octets of a spooled message.
    fn read(&self, py: Python<'_>, queue_id: &str) -> PyResult<(String, Py<PyBytes>)> {
        let spool = self.check()?.spool().clone();
        let (env, msg) = py
            .allow_threads(|| spool.read(queue_id))
            .map_err(|e| to_py(&e.into()))?;
        let json = serde_json::to_string(&env).expect("envelope serialises");
        Ok((json, PyBytes::new(py, &msg).unbind()))
    }

    /// A spooled message's file exactly as it is on disk (header, envelope
    /// and message octets): what a PostgreSQL store keeps before the 250.
    fn read_raw(&self, py: Python<'_>, queue_id: &str) -> PyResult<Py<PyBytes>> {
        let spool = self.check()?.spool().clone();
        let raw = py
            .allow_threads(|| spool.read_raw(queue_id))
            .map_err(|e| to_py(&e.into()))?;
        Ok(PyBytes::new(py, &raw).unbind())
    }

    /// `read_raw` for a batch, None where the file is gone: intake on
    /// PostgreSQL reads every arrived message's file. The GIL is released
    /// once for the batch, not once per file: a thread that lets it go
    /// waits for the event loop to give it back.
    fn read_raw_many(
        &self,
        py: Python<'_>,
        queue_ids: Vec<String>,
    ) -> PyResult<Vec<Option<Py<PyBytes>>>> {
        let spool = self.check()?.spool().clone();
        let raws = py.allow_threads(|| {
            queue_ids
                .iter()
                .map(|id| match spool.read_raw(id) {
                    Ok(raw) => Ok(Some(raw)),
                    Err(mxg_spool::SpoolError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                })
                .collect::<Result<Vec<_>, _>>()
        });
        let raws = raws.map_err(|e| to_py(&e.into()))?;
        Ok(raws
            .into_iter()
            .map(|raw| raw.map(|raw| PyBytes::new(py, &raw).unbind()))
            .collect())
    }

    /// Writes a spool file from bytes `read_raw` gave (validated first,
    /// durable when this returns) and returns its queue id; a no-op when
    /// the same file is there, an error when another one is.
    fn restore(&self, py: Python<'_>, raw: &[u8]) -> PyResult<String> {
        let spool = self.check()?.spool().clone();
        py.allow_threads(|| spool.restore(raw))
            .map_err(|e| to_py(&e.into()))
    }

    /// Connections at once per destination (this node's share in a
    /// cluster).
    fn set_max_per_destination(&self, limit: usize) -> PyResult<()> {
        self.check()?
            .set_max_per_destination(limit)
            .map_err(|e| to_py(&e))
    }

    /// Opens, defers or closes the intake of new mail: `"open"`,
    /// `"defer"` (MAIL gets 451 4.3.0 with `text`), `"closed"` (new
    /// connections and MAIL get 421 4.3.2 with `text`).
    fn set_intake(&self, mode: &str, text: &str) -> PyResult<()> {
        self.check()?.set_intake(mode, text).map_err(|e| to_py(&e))
    }

    /// Envelope (JSON) of a spooled message.
    fn read_envelope(&self, py: Python<'_>, queue_id: &str) -> PyResult<String> {
        let spool = self.check()?.spool().clone();
        let env = py
            .allow_threads(|| spool.read_envelope(queue_id))
            .map_err(|e| to_py(&e.into()))?;
        Ok(serde_json::to_string(&env).expect("envelope serialises"))
    }

    /// Removes a message whose recipients all have a final state.
    fn remove(&self, queue_id: &str) -> PyResult<()> {
        self.check()?
            .spool()
            .remove(queue_id)
            .map_err(|e| to_py(&e.into()))
    }

    /// Removes several finished messages without holding the GIL; returns
    /// the ids that were not found.
    fn remove_many(&self, py: Python<'_>, queue_ids: Vec<String>) -> PyResult<Vec<String>> {
        let spool = self.check()?.spool().clone();
        let mut missing = Vec::new();
        let result = py.allow_threads(|| {
            for id in &queue_ids {
                match spool.remove(id) {
                    Ok(()) => {}
                    Err(mxg_spool::SpoolError::NotFound(_)) => missing.push(id.clone()),
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        result.map_err(|e| to_py(&e.into()))?;
        Ok(missing)
    }

    /// Queue ids of every spooled message, oldest first.
    fn spool_ids(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let spool = self.check()?.spool().clone();
        py.allow_threads(|| spool.list())
            .map_err(|e| to_py(&e.into()))
    }

    /// The data plane's counters and gauges by name: inbound sessions and
    /// refusals by reason, outbound connections opened, reused and idle.
    fn stats(&self) -> PyResult<std::collections::HashMap<String, u64>> {
        Ok(self.check()?.stats().into_iter().collect())
    }

    /// Listening addresses as `ip:port`.
    fn local_addrs(&self) -> PyResult<Vec<String>> {
        Ok(self
            .check()?
            .local_addrs()
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    /// Stops accepting, lets open transactions finish, stops the runtime.
    fn shutdown(&self, py: Python<'_>) {
        if std::process::id() == self.pid {
            py.allow_threads(|| self.inner.shutdown());
        }
    }
}

/// Reads a spool file without an engine (for `mxg queue show`): returns
/// the envelope as JSON and the message octets.
#[pyfunction]
fn read_spool_file(py: Python<'_>, path: std::path::PathBuf) -> PyResult<(String, Py<PyBytes>)> {
    let bytes = mxg_spool::read_file(&path).map_err(|e| {
        to_py(
            &mxg_spool::SpoolError::Io {
                path: path.clone(),
                source: e,
            }
            .into(),
        )
    })?;
    let (env, start) = mxg_spool::parse_spool_file(&path, &bytes).map_err(|e| to_py(&e.into()))?;
    let json = serde_json::to_string(&env).expect("envelope serialises");
    Ok((json, PyBytes::new(py, &bytes[start..]).unbind()))
}

/// Registered with `atexit`: shuts down engines still running.
#[pyfunction]
fn _shutdown_all(py: Python<'_>) {
    if let Ok(mut live) = LIVE.lock() {
        let engines: Vec<Arc<RustEngine>> = live.drain(..).filter_map(|w| w.upgrade()).collect();
        py.allow_threads(|| engines.iter().for_each(|e| e.shutdown()));
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_function(wrap_pyfunction!(_shutdown_all, m)?)?;
    let shutdown_all = m.getattr("_shutdown_all")?;
    m.py()
        .import("atexit")?
        .call_method1("register", (shutdown_all,))?;
    m.add_function(wrap_pyfunction!(read_spool_file, m)?)?;
    m.add_function(wrap_pyfunction!(scan::scan, m)?)?;
    m.add_function(wrap_pyfunction!(vocab::vocabulary, m)?)?;
    m.add_function(wrap_pyfunction!(vocab::tlsa_usable, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
