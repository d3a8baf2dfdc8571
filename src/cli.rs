//! Command-line interface: the commands and their flags (SPEC §1).

#[cfg(feature = "demo")]
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config;
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "lagdns", version, about = "Authoritative DNS for PostgreSQL primaries and lag-aware read replicas")]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text", env = "LAGDNS_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log level or filter directive (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "info", env = "LAGDNS_LOG_LEVEL")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: DNS over UDP and TCP, HTTP for status and metrics.
    Serve {
        /// The config file.
        #[arg(long, env = "LAGDNS_CONFIG")]
        config: PathBuf,
    },
    /// Validate the config and print the zone's names and the nodes.
    Check {
        /// The config file.
        #[arg(long, env = "LAGDNS_CONFIG")]
        config: PathBuf,
    },
    /// Print every cluster's nodes from a running server. Exit 0: ready, every cluster
    /// has a primary and no conflict; 1: cannot reach the server; 2: not ready, or a
    /// cluster in conflict or without a known primary.
    Status {
        /// The server's HTTP address.
        #[arg(long, default_value = config::DEFAULT_HTTP_LISTEN)]
        http: String,
        /// Print the `/status` JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Start a local primary and two streaming replicas and serve them.
    #[cfg(feature = "demo")]
    Demo {
        /// DNS address (UDP and TCP).
        #[arg(long, default_value = config::DEFAULT_DNS_LISTEN)]
        dns: SocketAddr,
        /// HTTP address.
        #[arg(long, default_value = config::DEFAULT_HTTP_LISTEN)]
        http: SocketAddr,
    },
}
