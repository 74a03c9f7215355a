//! Every way a client call can fail, each with the context a person needs to act on it: which request, what
//! the server said, and for refused payments the server's reason code passed through unchanged.

use ouro_core::eip712::SignatureError;
use ouro_core::x402::header::HeaderError;
use ouro_core::x402::SettlementResponse;

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("service URL {0:?} must start with http:// or https://")]
    BadUrl(String),
    #[error("could not set up the HTTP client: {0}")]
    HttpSetup(#[source] reqwest::Error),
    #[error("{what}: request failed: {source}")]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: answer is not the expected JSON: {detail}")]
    BadBody { what: String, detail: String },
    #[error("{what}: header {header} could not be decoded: {source}")]
    BadHeader {
        what: String,
        header: &'static str,
        #[source]
        source: HeaderError,
    },
    #[error("{what}: HTTP {status}: {message}")]
    Status { what: String, status: u16, message: String },
    // The edge's message already starts with the field it names.
    #[error("the service refused the submission: {message}")]
    Invalid { field: String, message: String },
    #[error("the service is busy (HTTP {status}, retry after {}): {message}", retry_after.as_deref().unwrap_or("?"))]
    Busy { status: u16, retry_after: Option<String>, message: String },
    #[error("an unpaid submission was answered HTTP {status}, not 402 Payment Required: {message}")]
    NotPaymentRequired { status: u16, message: String },
    #[error("the 402 carries no PAYMENT-REQUIRED header, so there is nothing to pay")]
    MissingPaymentRequired,
    #[error("the 402 offers no `exact` payment (schemes offered: {0})")]
    NoExactScheme(String),
    #[error("payment requirements field {field} is unusable ({value:?})")]
    BadRequirements { field: &'static str, value: String },
    #[error("authorization field {field} is unusable ({value:?})")]
    BadAuthorization { field: &'static str, value: String },
    #[error("signing the payment failed: {0}")]
    Sign(#[from] SignatureError),
    #[error("the payment was refused (HTTP {status}, {reason}): {message}")]
    PaymentRefused {
        status: u16,
        reason: String,
        message: String,
        /// The settlement the server reported, when it got that far (a failed transfer); boxed to keep every
        /// `Result` small.
        settlement: Option<Box<SettlementResponse>>,
    },
    #[error("job {0} not found")]
    NotFound(String),
    #[error("job {id} did not finish within {waited_s} s (last status {status:?})")]
    Timeout { id: String, waited_s: u64, status: String },
    #[error("private key: {0}")]
    BadKey(String),
}
