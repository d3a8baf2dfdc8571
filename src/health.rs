//! Rise/fall hysteresis: turns a stream of probe successes and failures into a node
//! state that does not flap. The first probe sets the state directly, so a node that
//! is down when lagdns starts is down from the first round.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// No probe has finished yet.
    Unknown,
    Up,
    Down,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Up => "up",
            NodeState::Down => "down",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node's state and its current run of same-outcome probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub state: NodeState,
    /// Consecutive successes (positive) or failures (negative) so far.
    streak: i64,
}

impl Default for Health {
    fn default() -> Self {
        Health { state: NodeState::Unknown, streak: 0 }
    }
}

impl Health {
    /// Folds one probe outcome; `fall` failures take an up node down, `rise`
    /// successes bring a down node up.
    pub fn observe(self, ok: bool, fall: u32, rise: u32) -> Health {
        let streak = match (ok, self.streak) {
            (true, s) if s > 0 => s + 1,
            (true, _) => 1,
            (false, s) if s < 0 => s - 1,
            (false, _) => -1,
        };
        let state = match self.state {
            NodeState::Unknown if ok => NodeState::Up,
            NodeState::Unknown => NodeState::Down,
            NodeState::Up if -streak >= fall as i64 => NodeState::Down,
            NodeState::Down if streak >= rise as i64 => NodeState::Up,
            s => s,
        };
        Health { state, streak }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeState::*;

    fn run(outcomes: &str, fall: u32, rise: u32) -> Vec<NodeState> {
        let mut h = Health::default();
        outcomes
            .chars()
            .map(|c| {
                h = h.observe(c == '+', fall, rise);
                h.state
            })
            .collect()
    }

    #[test]
    fn rise_fall_table() {
        let cases: &[(&str, u32, u32, &[NodeState])] = &[
            ("+", 2, 2, &[Up]),
            ("-", 2, 2, &[Down]),
            ("+-", 2, 2, &[Up, Up]),
            ("+--", 2, 2, &[Up, Up, Down]),
            ("+-+-+-", 2, 2, &[Up, Up, Up, Up, Up, Up]),
            ("-+", 2, 2, &[Down, Down]),
            ("-++", 2, 2, &[Down, Down, Up]),
            ("-+-++", 2, 2, &[Down, Down, Down, Down, Up]),
            ("+-", 1, 1, &[Up, Down]),
            ("+---+++", 3, 3, &[Up, Up, Up, Down, Down, Down, Up]),
        ];
        for (outcomes, fall, rise, want) in cases {
            assert_eq!(run(outcomes, *fall, *rise), *want, "{outcomes} fall={fall} rise={rise}");
        }
    }
}
