//! The Ouro executor: takes signed job assignments from the edge, runs each in a locked-down Docker container,
//! and reports status and outcome back to the edge (protocol in `ouro_core::dispatch`).

pub mod api;
pub mod build;
pub mod capture;
pub mod config;
pub mod engine;
pub mod outputs;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod server;
pub mod slots;
pub mod storage;
pub mod worker;
pub mod workspace;
