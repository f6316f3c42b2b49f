//! `mxg-benchsink` binary: CLI, runtime, signals and the stats file.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mxg_benchsink::cli::{self, Command, Options};
use mxg_benchsink::{bind, serve, tls, Settings, Stats};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Run(opts)) => opts,
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("mxg-benchsink: {e}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    // Worker count defaults to the number of CPUs; TOKIO_WORKER_THREADS
    // overrides it, e.g. to keep the sink off the cores of the relay.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mxg-benchsink: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mxg-benchsink: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: Options) -> std::io::Result<()> {
    let tls = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(tls::load(cert, key)?)),
        _ => None,
    };
    let stats = Arc::new(Stats::default());
    let settings = Arc::new(Settings {
        hostname: opts.hostname.clone(),
        tls,
        reply_delay: opts.reply_delay,
        stats: Arc::clone(&stats),
    });
    // Register signal handlers before announcing readiness, so a harness
    // that signals right after seeing "listening" gets the final stats.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    for listener in bind(&opts.listen)? {
        println!("listening on {}", listener.local_addr()?);
        tokio::spawn(serve(listener, Arc::clone(&settings)));
    }
    if let Some(path) = opts.stats_file.clone() {
        tokio::spawn(write_stats_every_second(path, Arc::clone(&stats)));
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let snap = stats.snapshot();
    if let Some(path) = &opts.stats_file {
        write_stats(path, snap).await;
    }
    println!("{}", snap.to_json());
    Ok(())
}

async fn write_stats_every_second(path: std::path::PathBuf, stats: Arc<Stats>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        write_stats(&path, stats.snapshot()).await;
    }
}

async fn write_stats(path: &Path, snap: mxg_benchsink::Snapshot) {
    if let Err(e) = snap.write_atomic(path).await {
        eprintln!("mxg-benchsink: stats file {}: {e}", path.display());
    }
}
