//! Raw TOML → typed [`Config`](super::Config), with file:line:key errors.

use super::{Config, ConfigError};

pub fn parse(_text: &str, _file: &str) -> Result<Config, ConfigError> {
    todo!()
}
