//! Lag arithmetic: byte lag and time lag from the evidence of where the primary's WAL
//! has been.
//!
//! Every probe that proves the primary had written up to some position at some moment
//! is *evidence*: the primary's `pg_current_wal_lsn()`, and a replica's
//! `pg_last_wal_receive_lsn()` (WAL a replica received must exist on the primary).
//! A replica that has replayed up to `r` is behind since the earliest moment any
//! evidence showed the primary beyond `r`; its time lag is that long. So:
//!
//! * a replica that has replayed everything ever seen has zero lag, also on an idle
//!   primary (no false alarm, unlike `now() - pg_last_xact_replay_timestamp()`);
//! * a replica whose replay is paused, slow, or cut off while the primary writes has a
//!   lag that grows with real time (no false zero, unlike "receive = replay");
//! * the value is a lower bound of the true lag (never a false alarm); it trails the
//!   truth by at most the gap between two pieces of evidence (≤ one probe interval).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::wal::Lsn;

/// The longest lag measured faithfully: the largest configured `max_lag` plus a
/// minute. `maxlag-N` queries are capped at this.
pub fn measurable(config: &Config) -> Duration {
    let longest = config.clusters.iter().flat_map(|c| c.endpoints.iter().map(|e| e.policy.max_lag)).max();
    longest.unwrap_or_default() + Duration::from_secs(60)
}

/// How long WAL evidence is kept: twice what must be measurable, so the evidence
/// behind any lag up to [`measurable`] is still there.
pub fn evidence_window(config: &Config) -> Duration {
    measurable(config) * 2
}

/// Evidence points `(at, lsn)`, kept as a staircase: time and LSN both strictly
/// increasing, so the first point beyond any LSN is found by binary search. A point
/// that an earlier-or-equal point with a higher-or-equal LSN dominates is dropped.
#[derive(Debug, Clone, Default)]
pub struct WalEvidence {
    points: VecDeque<(Instant, Lsn)>,
}

impl WalEvidence {
    /// Records that the primary's WAL had reached `lsn` at `at`.
    pub fn record(&mut self, at: Instant, lsn: Lsn) {
        // The last point at or before `at` has the highest LSN of those points.
        let pos = self.points.partition_point(|(t, _)| *t <= at);
        if pos > 0 && self.points[pos - 1].1 >= lsn {
            return;
        }
        self.points.insert(pos, (at, lsn));
        while self.points.get(pos + 1).is_some_and(|(_, l)| *l <= lsn) {
            self.points.remove(pos + 1);
        }
    }

    /// Forgets evidence older than `horizon`, keeping the newest point.
    pub fn prune(&mut self, horizon: Instant) {
        while self.points.len() > 1 && self.points[0].0 < horizon {
            self.points.pop_front();
        }
    }

    /// Forgets everything (the primary changed: its WAL is another history).
    pub fn clear(&mut self) {
        self.points.clear();
    }

    /// The newest WAL position known on the primary.
    pub fn latest(&self) -> Option<Lsn> {
        self.points.back().map(|(_, l)| *l)
    }

    /// Time lag of a replica that had replayed `replay` when observed at `observed`:
    /// how long before `observed` the primary was first seen beyond `replay`.
    /// `None` when there is no evidence at all (the primary was never seen).
    pub fn time_lag(&self, replay: Lsn, observed: Instant) -> Option<Duration> {
        let latest = self.latest()?;
        if replay >= latest {
            return Some(Duration::ZERO);
        }
        let first_beyond = self.points.partition_point(|(_, l)| *l <= replay);
        let (since, _) = self.points[first_beyond];
        Some(observed.saturating_duration_since(since))
    }

    /// Byte lag: the newest known primary position minus `replay`, clamped at 0.
    pub fn byte_lag(&self, replay: Lsn) -> Option<u64> {
        self.latest().map(|l| l.bytes_after(replay))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.points.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Any instant: the code under test takes time as an argument.
    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    /// Evidence at `t0 + ms` for each `(ms, lsn)`.
    fn evidence(t0: Instant, points: &[(u64, u64)]) -> WalEvidence {
        let mut e = WalEvidence::default();
        for (at, lsn) in points {
            e.record(t0 + ms(*at), Lsn(*lsn));
        }
        e
    }

    /// name, evidence `(ms, lsn)`, replay position, observed at (ms), expected lag (ms)
    type Case<'a> = (&'a str, &'a [(u64, u64)], u64, u64, Option<u64>);

    #[test]
    fn time_lag_table() {
        let t0 = base();
        // primary writes steadily: 100 bytes per 250 ms
        let steady = [(0, 1000), (250, 1100), (500, 1200), (750, 1300), (1000, 1400)];
        let idle = [(0, 5000), (250, 5000), (500, 5000), (10_000, 5000)];
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // name, evidence, replay, observed at, expected lag ms
            ("caught up with the newest sample", &steady, 1400, 1000, Some(0)),
            ("ahead of the newest sample", &steady, 1450, 1000, Some(0)),
            ("idle primary, replica caught up long after", &idle, 5000, 60_000, Some(0)),
            ("paused at 1100: primary passed it at 500", &steady, 1100, 1000, Some(500)),
            ("paused at 1100, observed later: grows with time", &steady, 1100, 3000, Some(2500)),
            ("between samples: beyond since the next sample", &steady, 1150, 1000, Some(500)),
            ("older than all evidence: since the oldest point", &steady, 900, 1000, Some(1000)),
            ("evidence newer than the observation: not behind yet", &steady, 1300, 700, Some(0)),
            ("no evidence at all", &[], 1, 1000, None),
        ];
        for (name, points, replay, observed, want) in cases {
            let e = evidence(t0, points);
            let got = e.time_lag(Lsn(*replay), t0 + ms(*observed)).map(|d| d.as_millis() as u64);
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn byte_lag_is_primary_minus_replay_clamped() {
        let t0 = base();
        let e = evidence(t0, &[(0, 1000), (250, 1600)]);
        assert_eq!(e.byte_lag(Lsn(1000)), Some(600));
        assert_eq!(e.byte_lag(Lsn(1600)), Some(0));
        assert_eq!(e.byte_lag(Lsn(2000)), Some(0), "a replica ahead of the last sample is not negative");
        assert_eq!(WalEvidence::default().byte_lag(Lsn(1)), None);
    }

    #[test]
    fn staircase_keeps_earliest_proof_and_drops_dominated_points() {
        let t0 = base();
        // out of order: a replica's receive position at 100 ms arrives after the
        // primary's sample at 250 ms.
        let e = evidence(t0, &[(250, 2000), (100, 1500), (300, 1800), (400, 2500)]);
        let pts: Vec<(u64, u64)> =
            e.points.iter().map(|(t, l)| (t.duration_since(t0).as_millis() as u64, l.0)).collect();
        assert_eq!(pts, vec![(100, 1500), (250, 2000), (400, 2500)]);
        // the earlier, lower proof makes a replica at 1400 behind since 100 ms
        assert_eq!(e.time_lag(Lsn(1400), t0 + ms(600)), Some(ms(500)));
        // a later proof of a higher position replaces a later, lower one
        let e = evidence(t0, &[(100, 1000), (300, 1200), (200, 1300)]);
        assert_eq!(e.len(), 2);
        assert_eq!(e.time_lag(Lsn(1100), t0 + ms(500)), Some(ms(300)));
    }

    #[test]
    fn prune_keeps_the_newest_point() {
        let t0 = base();
        let mut e = evidence(t0, &[(0, 10), (100, 20), (200, 30)]);
        e.prune(t0 + ms(150));
        assert_eq!(e.len(), 1);
        e.prune(t0 + ms(10_000));
        assert_eq!(e.latest(), Some(Lsn(30)), "the last known position survives a primary outage");
    }
}
