//! The `lagdns` binary: parse the command line, set up logging, run one command.

use std::process::ExitCode;

use clap::Parser;
use lagdns::cli::{Cli, Command};
use lagdns::{cmd, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = telemetry::init(cli.log_format, &cli.log_level) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `pow` and `log`, the only functions of the C math library the binary calls (tokio's
/// scheduler takes a `powf` per batch of polls; weighted choice an `ln`), from the
/// `libm` crate (a port of musl's): defined here, the linker leaves `libm.so` out, and
/// with it the half MiB of its pages a running server kept resident.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod math {
    #[no_mangle]
    extern "C" fn pow(x: f64, y: f64) -> f64 {
        libm::pow(x, y)
    }

    #[no_mangle]
    extern "C" fn log(x: f64) -> f64 {
        libm::log(x)
    }
}

/// Runs one command; the exit code, or an error (exit 1).
fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Check { config } => cmd::check::run(&config).map(|()| 0),
        Command::Serve { config } => cmd::runtime()?.block_on(cmd::serve::run(config)).map(|()| 0),
        Command::Status { http, json } => cmd::status::run(&http, json),
        #[cfg(feature = "demo")]
        Command::Demo { dns, http } => cmd::runtime()?.block_on(cmd::demo::run(dns, http)).map(|()| 0),
    }
}
