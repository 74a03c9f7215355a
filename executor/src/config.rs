//! Command line and environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ouro_core::job::IMAGE_ALIASES;

#[derive(Debug, Parser)]
#[command(name = "ouro-executor", about = "Runs paid Ouro jobs in sandboxed Docker containers.")]
pub struct Cli {
    /// Address the assignment API listens on.
    #[arg(long, env = "OURO_EXECUTOR_LISTEN", default_value = "127.0.0.1:8788")]
    pub listen: SocketAddr,

    /// Base URL of the edge, where status changes and results are posted.
    #[arg(long, env = "OURO_EDGE_URL", default_value = "http://127.0.0.1:8787")]
    pub edge_url: String,

    /// Shared HMAC secret of the edge ⇄ executor protocol.
    #[arg(long, env = "OURO_EXECUTOR_SECRET", hide_env_values = true)]
    pub secret: String,

    /// Jobs run at the same time.
    #[arg(long, env = "OURO_EXECUTOR_SLOTS", default_value_t = 2)]
    pub slots: u32,

    /// Image alias → engine image, e.g. `ouro-python=ouro-python:latest` (repeat, or comma-separate in the env).
    #[arg(
        long = "image",
        env = "OURO_EXECUTOR_IMAGES",
        value_delimiter = ',',
        value_parser = parse_image_mapping,
        default_values = [
            "ouro-python=ouro-python:latest",
            "ouro-ubuntu=ouro-ubuntu:latest",
            "ouro-nodejs=ouro-nodejs:latest",
        ],
    )]
    pub images: Vec<(String, String)>,

    /// Where per-job workspaces are created (must be on a disk Docker can bind-mount).
    #[arg(long, env = "OURO_EXECUTOR_WORK_DIR", default_value = "/tmp/ouro-executor")]
    pub work_dir: PathBuf,

    /// Deadline of each single Docker API call, in seconds.
    #[arg(long, env = "OURO_EXECUTOR_DOCKER_TIMEOUT_S", default_value_t = 30)]
    pub docker_timeout_s: u64,

    /// Docker engine socket.
    #[arg(long, env = "OURO_DOCKER_SOCKET", default_value = "unix:///var/run/docker.sock")]
    pub docker_socket: String,

    /// How long to keep retrying a result the edge does not accept (edge down or failing), in seconds.
    #[arg(long, env = "OURO_EXECUTOR_RESULT_RETRY_S", default_value_t = 120)]
    pub result_retry_s: u64,

    /// On SIGTERM/SIGINT, how long running jobs may continue before they are killed, in seconds.
    #[arg(long, env = "OURO_EXECUTOR_DRAIN_S", default_value_t = 30)]
    pub drain_s: u64,

    /// Network of a Dockerfile build's RUN steps: `none` (default: builds install only what the workspace ships),
    /// or an engine network such as `default`/`bridge` to let builds download packages. `host` is refused.
    #[arg(long, env = "OURO_EXECUTOR_BUILD_NETWORK", default_value = "none")]
    pub build_network: String,

    /// Most images built from Dockerfiles kept as the build cache; the least recently used go first.
    #[arg(long, env = "OURO_EXECUTOR_BUILD_CACHE_IMAGES", default_value_t = 20)]
    pub build_cache_images: usize,

    /// Raw bytes of each stream kept for the job's full log (`GET /api/jobs/{id}/logs`), on disk while the job
    /// runs, then sent to the edge; 0 keeps no log.
    #[arg(long, env = "OURO_EXECUTOR_LOG_CAP_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub log_cap_bytes: u64,
}

/// Validated configuration.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub edge_url: String,
    pub secret: Vec<u8>,
    pub slots: u32,
    pub images: HashMap<String, String>,
    pub work_dir: PathBuf,
    pub docker_timeout: Duration,
    pub docker_socket: String,
    pub result_retry: Duration,
    pub drain: Duration,
    pub build: BuildSettings,
    /// See [`Cli::log_cap_bytes`].
    pub log_cap_bytes: u64,
}

/// How Dockerfile jobs are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSettings {
    /// Network mode of the build's RUN steps.
    pub network: String,
    /// Most `ouro-build` images kept.
    pub cache_images: usize,
}

impl Default for BuildSettings {
    fn default() -> Self {
        BuildSettings { network: "none".into(), cache_images: 20 }
    }
}

// Hand-written so the secret never reaches a log line.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("edge_url", &self.edge_url)
            .field("secret", &"<redacted>")
            .field("slots", &self.slots)
            .field("images", &self.images)
            .field("work_dir", &self.work_dir)
            .field("docker_timeout", &self.docker_timeout)
            .field("docker_socket", &self.docker_socket)
            .field("result_retry", &self.result_retry)
            .field("drain", &self.drain)
            .field("build", &self.build)
            .field("log_cap_bytes", &self.log_cap_bytes)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("the executor secret is empty")]
    EmptySecret,
    #[error("--slots must be at least 1")]
    NoSlots,
    #[error("--docker-timeout-s must be at least 1")]
    NoDockerTimeout,
    #[error("--edge-url {0:?} is not an http:// or https:// URL")]
    BadEdgeUrl(String),
    #[error("--work-dir {0:?} must be an absolute path (Docker bind-mounts need one)")]
    RelativeWorkDir(PathBuf),
    #[error("--build-network {0:?} is refused: builds run untrusted code as root; use none, default, bridge or a named network")]
    BadBuildNetwork(String),
    #[error("--build-cache-images must be at least 1 (the image just built is always kept)")]
    NoBuildCache,
}

impl Cli {
    pub fn into_config(self) -> Result<Config, ConfigError> {
        if self.secret.is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        if self.slots == 0 {
            return Err(ConfigError::NoSlots);
        }
        if self.docker_timeout_s == 0 {
            return Err(ConfigError::NoDockerTimeout);
        }
        if !(self.edge_url.starts_with("http://") || self.edge_url.starts_with("https://")) {
            return Err(ConfigError::BadEdgeUrl(self.edge_url));
        }
        if !self.work_dir.is_absolute() {
            return Err(ConfigError::RelativeWorkDir(self.work_dir));
        }
        let build_network = self.build_network.trim().to_string();
        // Host networking would hand a build the host's loopback (this executor's API, the edge); sharing another
        // container's namespace is just as wide open.
        if build_network.is_empty() || build_network == "host" || build_network.starts_with("container:") {
            return Err(ConfigError::BadBuildNetwork(self.build_network));
        }
        if self.build_cache_images == 0 {
            return Err(ConfigError::NoBuildCache);
        }
        Ok(Config {
            listen: self.listen,
            edge_url: self.edge_url,
            secret: self.secret.into_bytes(),
            slots: self.slots,
            // A later mapping of the same alias wins, so the env default can be overridden one alias at a time.
            images: self.images.into_iter().collect(),
            work_dir: self.work_dir,
            docker_timeout: Duration::from_secs(self.docker_timeout_s),
            docker_socket: self.docker_socket,
            result_retry: Duration::from_secs(self.result_retry_s),
            drain: Duration::from_secs(self.drain_s),
            build: BuildSettings { network: build_network, cache_images: self.build_cache_images },
            log_cap_bytes: self.log_cap_bytes,
        })
    }
}

/// `alias=engine_image`, where alias is one the public API knows (a typo would silently refuse all its jobs).
fn parse_image_mapping(s: &str) -> Result<(String, String), String> {
    let (alias, image) = s.split_once('=').ok_or_else(|| format!("{s:?} is not alias=engine_image"))?;
    let (alias, image) = (alias.trim(), image.trim());
    if !IMAGE_ALIASES.contains(&alias) {
        return Err(format!("unknown image alias {alias:?} (known: {})", IMAGE_ALIASES.join(", ")));
    }
    if image.is_empty() {
        return Err(format!("empty engine image for {alias}"));
    }
    Ok((alias.to_string(), image.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["ouro-executor"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map_err(|e| e.to_string())?.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_cover_every_alias() {
        let c = parse(&["--secret", "s"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8788");
        assert_eq!(c.slots, 2);
        assert_eq!(c.build, BuildSettings::default());
        for alias in IMAGE_ALIASES {
            assert_eq!(c.images.get(alias).map(String::as_str), Some(format!("{alias}:latest").as_str()));
        }
        assert!(!format!("{c:?}").contains("\"s\""), "secret stays out of Debug");
    }

    #[test]
    fn image_mappings_parse_and_are_checked() {
        let c = parse(&["--secret", "s", "--image", "ouro-python=py:1", "--image", "ouro-ubuntu=deb:1"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.images.len(), 2);
        assert_eq!(c.images.get("ouro-python").map(String::as_str), Some("py:1"));
        assert!(parse(&["--secret", "s", "--image", "ouro-rust=x"]).is_err());
        assert!(parse(&["--secret", "s", "--image", "nonsense"]).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&[]).is_err(), "secret is required");
        assert!(parse(&["--secret", ""]).is_err());
        assert!(parse(&["--secret", "s", "--slots", "0"]).is_err());
        assert!(parse(&["--secret", "s", "--edge-url", "ftp://x"]).is_err());
        assert!(parse(&["--secret", "s", "--work-dir", "relative"]).is_err());
        assert!(parse(&["--secret", "s", "--build-network", "host"]).is_err());
        assert!(parse(&["--secret", "s", "--build-network", "container:x"]).is_err());
        assert!(parse(&["--secret", "s", "--build-cache-images", "0"]).is_err());
        let c = parse(&["--secret", "s", "--build-network", "default", "--build-cache-images", "3"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.build, BuildSettings { network: "default".into(), cache_images: 3 });
    }
}
