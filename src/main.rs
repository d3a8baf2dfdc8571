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
