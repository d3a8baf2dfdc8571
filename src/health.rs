//! Rise/fall hysteresis: turns a stream of probe successes and failures into a node
//! state that does not flap, and (in `state`) a replica's eligibility that does not
//! flap. The first probe sets the state directly, so a node that is down when lagdns
//! starts is down from the first round.

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

/// Rise/fall hysteresis over a stream of good and bad observations; one type for a
/// node's health (`fall` failures take it down, `rise` successes bring it back) and for
/// a node's eligibility on an endpoint (leaving at once, `fall = 0`; coming back after
/// `rise` good probes).
///
/// Counting and deciding are separate steps because eligibility counts one thing (the
/// node's own probes, judged as if it were up) and decides on another (the verdict
/// now); node health counts and decides on the same outcome ([`Hysteresis::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hysteresis {
    /// `None` until the first decision, which is taken as is.
    on: Option<bool>,
    /// Consecutive good observations so far (0 after a bad one).
    good: u32,
    /// Consecutive bad observations so far (0 after a good one).
    bad: u32,
}

impl Hysteresis {
    /// Counts and decides on one outcome: the node-health step.
    pub fn observe(mut self, ok: bool, fall: u32, rise: u32) -> Hysteresis {
        self.count(ok);
        self.decide(ok, fall, rise);
        self
    }

    /// Counts one observation into the current run.
    pub fn count(&mut self, good: bool) {
        if good {
            (self.good, self.bad) = (self.good.saturating_add(1), 0);
        } else {
            (self.good, self.bad) = (0, self.bad.saturating_add(1));
        }
    }

    /// Decides with the judgement `good` now: the first decision is taken as is; on
    /// turns off after `fall` consecutive bad observations (0: at once), off turns on
    /// after `rise` consecutive good ones.
    pub fn decide(&mut self, good: bool, fall: u32, rise: u32) {
        self.on = Some(match self.on {
            None => good,
            Some(true) => good || self.bad < fall,
            Some(false) => good && self.good >= rise,
        });
    }

    /// `None` before the first decision.
    pub fn on(&self) -> Option<bool> {
        self.on
    }

    /// The current run of good observations.
    pub fn good_run(&self) -> u32 {
        self.good
    }

    /// Read as a node's health.
    pub fn state(&self) -> NodeState {
        match self.on {
            None => NodeState::Unknown,
            Some(true) => NodeState::Up,
            Some(false) => NodeState::Down,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeState::*;

    fn run(outcomes: &str, fall: u32, rise: u32) -> Vec<NodeState> {
        let mut h = Hysteresis::default();
        outcomes
            .chars()
            .map(|c| {
                h = h.observe(c == '+', fall, rise);
                h.state()
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

    #[test]
    fn counting_one_thing_and_deciding_on_another() {
        // The eligibility use: fall 0 (leave at once), rise 2; `+`/`-` is what is
        // counted, the uppercase letter what is decided on (G good, B bad, . nothing).
        let cases: &[(&str, &[Option<bool>])] = &[
            ("+G", &[Some(true)]),
            ("-B", &[Some(false)]),
            ("+G+B", &[Some(true), Some(false)]),
            ("+G+B+G", &[Some(true), Some(false), Some(true)]), // the run was already 3
            ("-B+G+G", &[Some(false), Some(false), Some(true)]),
            ("+.+.", &[None, None]),
            ("+G+B-G+G", &[Some(true), Some(false), Some(false), Some(false)]),
        ];
        for (script, want) in cases {
            let mut h = Hysteresis::default();
            let mut got = Vec::new();
            for step in script.as_bytes().chunks(2) {
                h.count(step[0] == b'+');
                match step[1] {
                    b'G' => h.decide(true, 0, 2),
                    b'B' => h.decide(false, 0, 2),
                    _ => {}
                }
                got.push(h.on());
            }
            assert_eq!(got, *want, "{script}");
        }
    }
}
