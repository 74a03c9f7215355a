//! `cargo xtask <command>`: the only way the local stack is installed, started, stopped and tested.
//!
//! - `up`     install what is missing, start every service, leave them running, print where they listen
//! - `down`   stop everything `up` started
//! - `demo`   `up`, then a real paid `echo hello` job with the `ouro` client
//! - `test`   `up` if needed, then every test (unit, executor, end to end, Python SDK); stops what it started
//! - `bench`  `up`, then the latency benchmark (paid job vs bare container, as a ratio)
//! - `status` what is running

mod install;
mod paths;
mod probe;
mod procs;
mod services;
mod tasks;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <up | down | demo | test [filter] [--keep] | bench [--rounds N] | status>
  up      install what is missing, start the local stack, leave it running
  down    stop everything `up` started
  demo    `up`, then a real paid `echo hello` job with the ouro client
  test    every test (starts the stack if needed and stops what it started; --keep leaves it up)
  bench   the latency benchmark: paid job vs a bare container run
  status  what runs";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => tasks::up().map(|_| ()),
        Some("down") => tasks::down(),
        Some("demo") => tasks::demo(),
        Some("test") => tasks::test(&args[1..]),
        Some("status") => tasks::status(),
        Some("bench") => tasks::bench(&args[1..]),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every failure of a task: a sentence saying what was being done and why it failed.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error(msg.into()))
}
