//! The commands: `serve`, `check`, `status`, `demo` (only with the cargo feature `demo`).
//! Each is a thin edge over the library; errors carry context with `anyhow` and end as
//! exit code 1 in `main`.

pub mod check;
#[cfg(feature = "demo")]
pub mod demo;
pub mod serve;
pub mod status;

/// The multi-threaded tokio runtime the long-running commands use.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
