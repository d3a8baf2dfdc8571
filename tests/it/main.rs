//! The integration tests, as one test binary (`cargo test --test it`): one link against
//! the lagdns library and its dependencies instead of one per file. A new test file goes
//! here as a module, not as another `tests/*.rs`. Filter by module, e.g.
//! `cargo test --test it faults::`.
//!
//! - `apps_netns`: real clients through the real system resolver, each test in a network
//!   and mount namespace of its own (re-executing this binary under `unshare`): psql,
//!   psycopg (`examples/read_your_writes.py`), the libpq recipe and PgBouncer
//!   (`examples/pgbouncer.ini`) through glibc or c-ares, a real Unbound and lagdns.
//! - `checks`: the load-balancer checks (SPEC §10) over real TCP with fabricated
//!   snapshots: HTTP `/check` and the HAProxy agent listener, its bounds and `allow`.
//! - `cli`: the real binary: `lagdns check` exit codes and messages, `LAGDNS_CONFIG`,
//!   `lagdns status` without a server, JSON logs and SIGTERM, `lagdns demo` and Ctrl-C.
//! - `config_examples`: every config example a user can copy parses (`config/`,
//!   `examples/`, the README's `toml` blocks).
//! - `dns_protocol`: the DNS server in-process over real UDP/TCP with fabricated
//!   snapshots: SPEC §5 row by row, EDNS, truncation, error rcodes, malformed packets.
//! - `e2e_pg`: end to end against a real primary and two real replicas.
//! - `edge`: SPEC §12 over real sockets from several 127.0.0.x sources: `allow`, TCP
//!   caps and timeouts, response-rate limiting.
//! - `faults`: faults injected into real PostgreSQL while lagdns serves; reaction times,
//!   SIGHUP reloads and SIGTERM of a real `lagdns serve`.
//! - `haproxy`: the README's HAProxy config (`examples/haproxy.cfg`) with a real HAProxy
//!   over a real primary and two replicas: reaction times to paused replay and failover.
//! - `http_status`: `/healthz`, `/status`, `/metrics` over real TCP and `lagdns status`.
//! - `layering`: the architecture: where IO libraries may be named, decision code pure.
//! - `locality_dns`: SPEC §8 locality in-process over real sockets: clients bound to
//!   127.0.1.x (location `a`) and 127.0.2.x (`b`), ECS options and their echoed scope,
//!   malformed ECS, the TXT client line, SRV priorities and their truncation.
//! - `locality_pg`: locality against a real primary and two replicas: a replica whose
//!   replay is paused under write load sends its location's clients elsewhere (`prefer`)
//!   or to the primary (`only`), and back; `/status` locations, read-answer metrics.
//! - `locality_unbound`: a real Unbound with its `subnetcache` module in front of lagdns:
//!   Unbound sends each client's /24 as ECS, lagdns answers per location, and Unbound's
//!   ECS cache keeps the two locations' answers apart.
//! - `ops_examples`: the operations examples with the real tools: Prometheus alert rules
//!   (`promtool check/test rules`, metric names exported), Kubernetes manifests
//!   (`kubernetes-validate`, `lagdns check` on their config), the Dockerfile (`hadolint`,
//!   its HEALTHCHECK against a live HTTP listener, labels, cache mounts).
//! - `patroni`: a real Patroni cluster (etcd + three members): `GET /cluster` from every
//!   member parsed by `lagdns::patroni` through a switchover and a member stopped and
//!   started; the ignored `capture_fixtures` writes `tests/fixtures/patroni/`.
//! - `probe_pg`: the probe task against real PostgreSQL: samples, timeouts, cleanup.
//! - `probe_password`: where the probe's password comes from (DSN, `password_file`,
//!   `PGPASSWORD`) against real PostgreSQL with password authentication.
//! - `probe_tls`: probe TLS against real PostgreSQL: `sslmode` semantics, client certs,
//!   refusals shown in `/status`.
//! - `resolver_unbound`: the README's Unbound recipe against a real Unbound.
//! - `common`: shared helpers (DNS client, HTTP GET, polling, a lagdns over a cluster).
//!
//! All modules share one process: a test may not change process-wide state (environment
//! variables, the current directory, signal handlers, a global subscriber); ports come
//! from the kernel (`127.0.0.1:0` or `common::free_port`), clusters from `localpg` slots.

mod apps_netns;
mod checks;
mod cli;
mod common;
mod config_examples;
mod discovery;
mod dns_protocol;
mod e2e_pg;
mod edge;
mod faults;
mod haproxy;
mod http_status;
mod layering;
mod locality_dns;
mod locality_pg;
mod locality_unbound;
mod ops_examples;
mod patroni;
mod probe_password;
mod probe_pg;
mod probe_tls;
mod resolver_unbound;
