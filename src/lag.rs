//! Lag arithmetic: byte lag and time lag from a history of the primary's WAL positions.
