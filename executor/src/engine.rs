//! The connection to the Docker engine, and a timeout around every call made on it.

use std::future::Future;
use std::time::Duration;

use bollard::{Docker, API_DEFAULT_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("docker {call} failed: {source}")]
    Call { call: &'static str, source: bollard::errors::Error },
    #[error("docker {call} did not answer within {timeout_s} s")]
    Timeout { call: &'static str, timeout_s: u64 },
}

impl EngineError {
    /// Whether the engine answered "no such object" (image or container).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            EngineError::Call {
                source: bollard::errors::Error::DockerResponseServerError { status_code: 404, .. },
                ..
            }
        )
    }
}

/// Runs one engine call with its own deadline: a wedged daemon must not wedge a job (and its slot) forever.
pub async fn call<T, F>(call: &'static str, timeout: Duration, fut: F) -> Result<T, EngineError>
where
    F: Future<Output = Result<T, bollard::errors::Error>>,
{
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(EngineError::Call { call, source }),
        Err(_) => Err(EngineError::Timeout { call, timeout_s: timeout.as_secs() }),
    }
}

/// Connects to the engine at `socket` (a path or `unix://` URL) and agrees on an API version: bollard speaks a
/// newer API than the Debian engine (1.41), which refuses clients newer than itself.
pub async fn connect(socket: &str, timeout: Duration) -> Result<Docker, EngineError> {
    let docker = Docker::connect_with_unix(socket, timeout.as_secs().max(1), API_DEFAULT_VERSION)
        .map_err(|source| EngineError::Call { call: "connect", source })?;
    let docker = call("version negotiation", timeout, docker.negotiate_version()).await?;
    call("ping", timeout, docker.ping()).await?;
    Ok(docker)
}
