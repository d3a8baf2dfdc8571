//! Release builds lay out the machine code so that what a running server executes sits
//! together at the start of `.text`: `link/text-order.txt` lists those functions (by
//! symbol, hottest first; `bench/text-order` regenerates it from a profiled run), passed
//! to the linker as `--symbol-ordering-file`. The kernel maps a binary's pages in 64 KiB
//! runs around each one executed, so with functions in crate order nearly the whole
//! `.text` was resident; gathered, mostly the runs holding them are.
//!
//! Symbols carry a hash that changes with the dependency graph (`Cargo.lock`, features),
//! so the list is regenerated when that changes; a symbol it names that the binary
//! lacks is skipped silently (the layout degrades, the build does not fail). Used only
//! where the linker is known to be LLD (rustc's default for x86_64 Linux since 1.90)
//! and nothing overrides it: elsewhere the build is the same without it.

use std::path::Path;
use std::process::Command;

const ORDER: &str = "link/text-order.txt";

fn main() {
    println!("cargo:rerun-if-changed={ORDER}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LAGDNS_NO_TEXT_ORDER");
    if std::env::var_os("LAGDNS_NO_TEXT_ORDER").is_some() || std::env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    if !Path::new(ORDER).exists() || !default_lld() {
        return;
    }
    let order = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(ORDER);
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Whether rustc links this target with its bundled LLD: x86_64 Linux (GNU), rustc
/// 1.90 or later, no linker or linker flags set by the environment.
fn default_lld() -> bool {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("TARGET") != "x86_64-unknown-linux-gnu" {
        return false;
    }
    let flags = format!("{} {}", env("CARGO_ENCODED_RUSTFLAGS"), env("RUSTFLAGS"));
    if flags.contains("linker") || flags.contains("fuse-ld") || std::env::vars().any(|(k, _)| k.ends_with("_LINKER")) {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else { return false };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version.split_whitespace().nth(1).unwrap_or("").split('.').map(|p| p.parse::<u32>().ok());
    matches!((parts.next().flatten(), parts.next().flatten()), (Some(1), Some(m)) if m >= 90)
}
