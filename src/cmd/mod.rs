//! The commands: `serve`, `check`, `status`, `demo`.
