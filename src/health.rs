//! Rise/fall hysteresis: turns a stream of probe successes and failures into a node
//! state that does not flap.

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
