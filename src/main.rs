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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check { config } => cmd::check::run(&config),
        Command::Serve { config } => cmd::runtime()?.block_on(cmd::serve::run(config)),
        Command::Status { http } => cmd::status::run(&http),
        #[cfg(feature = "demo")]
        Command::Demo { dns, http } => cmd::runtime()?.block_on(cmd::demo::run(dns, http)),
    }
}
