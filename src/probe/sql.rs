//! The probe's SQL: one round trip per probe, one named constant, a comment per column.
//!
//! Privileges (verified on PostgreSQL 15): every function used here is executable by
//! PUBLIC, but `pg_stat_wal_receiver` hides all its columns except `pid` from roles
//! that lack `pg_read_all_stats`, so `received_tli` reads NULL for a plain role. The
//! intended production role is therefore
//! `CREATE ROLE lagdns LOGIN PASSWORD '…' IN ROLE pg_monitor;` (`pg_monitor` includes
//! `pg_read_all_stats`; it also covers `pg_control_system()` on versions/installations
//! where that is revoked from PUBLIC). No superuser, no table access.

use tokio_postgres::types::PgLsn;
use tokio_postgres::Row;

use super::Sample;
use crate::wal::{Lsn, SystemId, Timeline};

/// Everything in a [`Sample`], in one statement (prepared once per connection).
///
/// The role is read once (`r.in_recovery`) and every role-specific function sits in a
/// `CASE` branch, because `pg_walfile_name()` and `pg_is_wal_replay_paused()` raise an
/// error on the wrong side of recovery (CASE evaluates only the branch taken; these are
/// volatile, so the planner never folds them early).
///
/// Timeline on a replica: `pg_stat_wal_receiver.received_tli` first. The checkpoint
/// value on a standby only moves at restartpoints (every `checkpoint_timeout`, 5 min by
/// default), so after the upstream is promoted it keeps reporting the old timeline for
/// minutes; `received_tli` follows the switch as soon as the replica streams the new
/// timeline. When no WAL receiver runs (the replica cannot reach its upstream, e.g. a
/// dead old primary) or the role lacks `pg_read_all_stats`, it falls back to
/// `pg_control_checkpoint().timeline_id`: possibly older than the truth, never newer,
/// which errs on the safe side (a replica on an older timeline than the primary is
/// not answered; see `topology::Reason::Timeline`).
pub const PROBE_SQL: &str = "\
SELECT
    -- 0 in_recovery (bool): true on a standby, false on a primary.
    r.in_recovery,
    -- 1 system_id (int8): tells unrelated clusters apart; read as u64 bits.
    (SELECT system_identifier FROM pg_control_system()) AS system_id,
    -- 2 timeline (int8, NULL = unknown): primary: first 8 hex digits of the WAL file
    --   holding the current LSN; replica: the timeline it is receiving.
    CASE WHEN r.in_recovery
         THEN coalesce((SELECT received_tli::int8 FROM pg_stat_wal_receiver),
                       (SELECT timeline_id::int8 FROM pg_control_checkpoint()))
         ELSE ('x' || lpad(left(pg_walfile_name(pg_current_wal_lsn()), 8), 16, '0'))::bit(64)::int8
    END AS timeline,
    -- 3 current_lsn (pg_lsn, NULL on a replica): the primary's WAL insert position.
    CASE WHEN NOT r.in_recovery THEN pg_current_wal_lsn() END AS current_lsn,
    -- 4 receive_lsn (pg_lsn, NULL on a primary or before streaming starts).
    pg_last_wal_receive_lsn() AS receive_lsn,
    -- 5 replay_lsn (pg_lsn, NULL on a primary).
    pg_last_wal_replay_lsn() AS replay_lsn,
    -- 6 replay_paused (bool): pg_wal_replay_pause() in effect; false on a primary.
    CASE WHEN r.in_recovery THEN pg_is_wal_replay_paused() ELSE false END AS replay_paused
FROM (SELECT pg_is_in_recovery() AS in_recovery) AS r";

/// Decodes the single row of [`PROBE_SQL`].
pub fn sample_from_row(row: &Row) -> Result<Sample, tokio_postgres::Error> {
    let lsn = |i: usize| -> Result<Option<Lsn>, tokio_postgres::Error> {
        Ok(row.try_get::<_, Option<PgLsn>>(i)?.map(|l| Lsn(u64::from(l))))
    };
    Ok(Sample {
        in_recovery: row.try_get(0)?,
        // int8 carries the u64 identifier's bits; `as` reinterprets them unchanged.
        system_id: SystemId(row.try_get::<_, i64>(1)? as u64),
        timeline: row.try_get::<_, Option<i64>>(2)?.and_then(|t| u32::try_from(t).ok()).map(Timeline),
        current_lsn: lsn(3)?,
        receive_lsn: lsn(4)?,
        replay_lsn: lsn(5)?,
        replay_paused: row.try_get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_with_seven_documented_columns() {
        let code: String = PROBE_SQL.lines().filter(|l| !l.trim_start().starts_with("--")).collect();
        assert!(!code.contains(';'), "one statement only");
        let comments = PROBE_SQL
            .lines()
            .filter(|l| l.trim_start().strip_prefix("-- ").is_some_and(|c| c.starts_with(|d: char| d.is_ascii_digit())))
            .count();
        assert_eq!(comments, 7);
        for (i, name) in
            ["in_recovery", "system_id", "timeline", "current_lsn", "receive_lsn", "replay_lsn", "replay_paused"]
                .iter()
                .enumerate()
        {
            assert!(PROBE_SQL.contains(&format!("-- {i} {name}")), "column {i} {name} documented");
        }
    }
}
