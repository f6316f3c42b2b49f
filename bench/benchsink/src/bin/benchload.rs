//! `mxg-benchload` binary: CLI, open-files limit, runtime and output.

use std::process::ExitCode;

use mxg_benchsink::load::{self, cli, cli::Command};

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Run(opts)) => opts,
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("mxg-benchload: {e}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let wanted = opts.idle.map_or(opts.connections, |i| i.connections) as u64;
    match load::rlimit::raise_nofile() {
        // A few descriptors go to stdio, the runtime and the JSON file.
        Ok(limit) if limit < wanted + 32 => eprintln!(
            "mxg-benchload: warning: open-files limit {limit} is below {wanted} connections"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("mxg-benchload: warning: cannot raise the open-files limit: {e}"),
    }
    // Worker count defaults to the number of CPUs; TOKIO_WORKER_THREADS
    // overrides it, e.g. to keep the generator off the server's cores.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mxg-benchload: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match rt.block_on(load::run(&opts)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("mxg-benchload: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", report.summary());
    if let Some(path) = &opts.json {
        if let Err(e) = std::fs::write(path, report.to_json().to_string() + "\n") {
            eprintln!("mxg-benchload: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    // Refusals and lost connections are results, reported above; the exit
    // status only says whether there are results.
    ExitCode::SUCCESS
}
