//! lagdns: authoritative DNS for PostgreSQL primaries and lag-aware read replicas.
//!
//! Data flows one way:
//!
//! ```text
//!  Config ──(SIGHUP: Config::load, parse + validate; on error keep the old one)──┐
//!    │           discovery (Patroni GET /cluster): loaded config + members ◄──────┘
//!    │           = the effective config, sent on as a reload; Patroni's view ─────┐
//!    │                                                                                ▼
//!  probe::supervisor ─ probe::task per node (IO) ──Observation──► publisher (the one writer)
//!                                        mpsc                        │ state: fold into ClusterState
//!                                                                    │   (pure: health, lag, topology)
//!                                                                    │ snapshot: Snapshot::next (pure)
//!                                                                    │ + dns::records::Zone::derive
//!                                                                    ▼   (a builder from cmd::serve)
//!                              store: one Generation { snapshot, zone } swapped atomically
//!                                     (SOA serial +1 iff an answer set changed)
//!                          ┌─────────────────────────┼──────────────────────────┐
//!                          ▼                         ▼                          ▼
//!            dns::respond: load once,      http: /status, /metrics     `lagdns status`
//!            answer (never waits)         render the same snapshot     reads /status
//! ```
//!
//! The modules, from the bottom up (a module names only those above it in this list;
//! `tests/it/layering.rs` checks the rules that matter):
//!
//! | module | owns |
//! |---|---|
//! | `wal` | LSN, timeline, system identifier value types |
//! | `config` | the typed config: `raw` TOML mirror, `units`, `dsn` (a node's DSN, parsed once; `dsn::template`: `node_dsn`, a DSN with `{host}`/`{port}` for discovered members), `validate` (file:line:key errors), `files` (opens the files a config names) |
//! | `health` | [`health::Hysteresis`]: rise/fall for node health and re-admission |
//! | `lag` | WAL evidence → time lag and byte lag |
//! | `locality` | location labels, the `[[locality.network]]` prefix trie, where a client is (SPEC §8) |
//! | `topology` | roles, primary election and split brain, eligibility and its reason |
//! | `select` | weighted choice of read answers |
//! | `patroni` | SPEC §11's decisions: Patroni's `GET /cluster` document (`parse_cluster`), the nodes its members become (`discover`: name, host, port, `node_dsn` filled in, weight 0 for `noloadbalance`, Patroni's role/state/lag for display), and the membership fold across rounds (`Membership::next`: 3 missed listings remove a member, a failed round keeps the list) |
//! | `probe` | `Observation`/`Sample`; `task` (one node's connection and query), `supervisor` (a task per node across reloads), `sql`, `secret`, `tls` |
//! | `snapshot` | the immutable picture DNS and HTTP read: plain domain data |
//! | `check` | load-balancer checks (HTTP `/check`, HAProxy agent replies) decided over a snapshot; the per-request `max_lag` bound `maxlag-` names share |
//! | `state` | the fold: observations → `ClusterState` → a cluster's view |
//! | `store` | the published generation (snapshot + what the front ends derive), one atomic swap |
//! | `discovery` | Patroni discovery's IO: `GET /cluster` every `discovery_interval`, the membership folded, the effective config (`merge`: loaded config + discovered members, pure) sent on as a reload, Patroni's view sent to the publisher as reports |
//! | `publisher` | the one writer: observations, reloads and discovery reports in, snapshots out to the store |
//! | `net` | CIDR networks and `Allow`, the lists `[dns] allow` and `[http] allow` match |
//! | `dns` | `query` (QueryKind/Qtype/Rcode, counters), `edge` (the edge's counters), `name` (qname → target: endpoint, node and SRV names, empty non-terminals), `answer` (the SPEC §5, §8 and §9 tables), `ecs` (the client-subnet option), `txt` (TXT lines), `records` (wire form, derived per snapshot), `respond` (the answer path: message in, response out), `wire` (the encoder), `rrl` (rate limiting), `hold` (queries held until the first round), `udp`/`tcp` (the sockets), `server` (binds and runs them) |
//! | `metrics` | every metric name; Prometheus text of a snapshot and the query counters |
//! | `http` | `/healthz`, `/readyz`, `/status` (`status`: the JSON document), `/metrics`, `/check`; `edge` (allow, connection cap and lifetime); `agent` (the HAProxy agent-check listener) |
//! | `telemetry`, `cli`, `cmd` | logging; the command line; `serve` (the wiring), `check`, `status`, `demo` |
//! | `testkit` | hand-built snapshots for tests of the renderings (not used by the server) |
//!
//! Decision modules (`config` validation, `wal`, `health`, `lag`, `locality`, `topology`,
//! `select`, `patroni`, `discovery::merge`, `snapshot`, `check`, `state`, `net`, `dns::name`, `dns::answer`,
//! `dns::ecs`, `dns::txt`, `dns::wire`, `dns::rrl`) are plain functions over
//! plain data: no clock, no sockets, no files. IO lives in `config::files`,
//! `probe::task`, `probe::supervisor`, `publisher`, `dns::udp`, `dns::tcp`, `dns::server`,
//! `http` and `cmd`.
//!
//! The throwaway local PostgreSQL cluster of `lagdns demo`, the integration tests and the
//! benchmarks is not part of this library: it is the `localpg` crate of the workspace,
//! used only as a dev-dependency and by `cmd::demo` (cargo feature `demo`, on by default;
//! `--no-default-features` builds lagdns without either).

pub mod check;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod discovery;
pub mod dns;
pub mod health;
pub mod http;
pub mod lag;
pub mod locality;
pub mod metrics;
pub mod net;
pub mod patroni;
pub mod probe;
pub mod publisher;
pub mod select;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod testkit;
pub mod topology;
pub mod wal;
