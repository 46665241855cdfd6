//! The object store on S3 or any S3-compatible server, through aws-sdk-s3.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::retry::{RetryConfig, RetryMode};
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use bytes::Bytes;

use super::{Backend, BackendError, BackendErrorKind, BackendResult, ObjectInfo, PutOutcome};

/// How to reach the server; credentials come from the standard AWS chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `None` for AWS itself.
    pub url: Option<String>,
    pub region: Option<String>,
    /// Path-style addressing; `None`: when the endpoint is not AWS's, wherever it was
    /// configured (URI, environment or profile).
    pub path_style: Option<bool>,
}

pub struct S3Backend {
    client: Client,
    bucket: String,
    /// Where requests go, for messages: the endpoint and the addressing style.
    target: String,
    /// The attempts per request the AWS configuration asks for, when it asks.
    max_attempts: Option<u32>,
}

/// The SDK's retry setting: one attempt per call, as retries are s3vfs's own layer (every
/// attempt counted and bounded). With `AWS_RETRY_MODE=adaptive` (or a profile's
/// `retry_mode = adaptive`) the SDK's client-side rate limiter still paces those attempts,
/// process-wide, and slows them after throttling answers.
fn sdk_retry(configured: Option<&RetryConfig>) -> RetryConfig {
    match configured.map(RetryConfig::mode) {
        Some(RetryMode::Adaptive) => RetryConfig::adaptive().with_max_attempts(1),
        _ => RetryConfig::disabled(),
    }
}

impl S3Backend {
    /// Builds a client. Must run inside the s3vfs runtime (aws-config may do I/O).
    pub async fn connect(endpoint: &Endpoint, bucket: &str) -> S3Backend {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &endpoint.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &endpoint.url {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        // AWS_MAX_ATTEMPTS, or a profile's max_attempts other than the SDK's default: s3vfs's
        // own retry layer makes at most that many attempts.
        let default_attempts = RetryConfig::standard().max_attempts();
        let max_attempts =
            shared
                .retry_config()
                .map(RetryConfig::max_attempts)
                .filter(|attempts| {
                    *attempts != default_attempts || std::env::var_os("AWS_MAX_ATTEMPTS").is_some()
                });
        // Custom servers (MinIO, moto, Garage, Ceph) want path-style addressing, also when
        // their endpoint comes from a profile.
        let path_style = endpoint
            .path_style
            .unwrap_or(endpoint.url.is_some() || shared.endpoint_url().is_some());
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(path_style)
            .retry_config(sdk_retry(shared.retry_config()))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            )
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if shared.region().is_none() {
            builder = builder.region(Region::new("us-east-1"));
        }
        let config = builder.build();
        let addressing = if path_style {
            "path-style"
        } else {
            "virtual-hosted-style"
        };
        let target = match endpoint.url.as_deref().or(shared.endpoint_url()) {
            Some(url) => format!("{url} ({addressing} addressing)"),
            None => format!(
                "AWS S3 in {} ({addressing} addressing)",
                config
                    .region()
                    .map_or("us-east-1", |region| region.as_ref())
            ),
        };
        S3Backend {
            client: Client::from_conf(config),
            bucket: bucket.to_string(),
            target: crate::error::redact_credentials(&target),
            max_attempts,
        }
    }

    fn error<E>(
        &self,
        operation: &'static str,
        key: &str,
        error: SdkError<E, HttpResponse>,
    ) -> BackendError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = error
            .raw_response()
            .map(|response| response.status().as_u16());
        let (code, message) = match &error {
            SdkError::ServiceError(service) => (
                service.err().code().map(str::to_string),
                service.err().message().map(str::to_string),
            ),
            _ => (None, None),
        };
        let context = causes(&error);
        let kind = classify(status, code.as_deref(), &context);
        let detail = match (code, message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code,
            _ if kind == BackendErrorKind::Unreachable => unreachable(&self.target, &context),
            _ => context,
        };
        BackendError {
            kind,
            operation,
            bucket: self.bucket.clone(),
            key: key.to_string(),
            status,
            detail,
        }
    }
}

/// The messages of `error` and of its sources, joined, each said once: no Debug dump.
fn causes(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let text = error.to_string();
        if !text.is_empty() && !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        next = error.source();
    }
    parts.join(": ")
}

/// Whether a failure with no HTTP reply means the server cannot be reached at all.
fn is_unreachable(context: &str) -> bool {
    let context = context.to_ascii_lowercase();
    [
        "tcp connect error",
        "dns error",
        "failed to lookup address",
        "certificate",
        "tls handshake",
    ]
    .iter()
    .any(|sign| context.contains(sign))
}

/// One line on a server that cannot be reached: where s3vfs went, why it failed, what to check.
fn unreachable(target: &str, context: &str) -> String {
    let lower = context.to_ascii_lowercase();
    let why = if lower.contains("dns error") || lower.contains("failed to lookup address") {
        "its host name does not resolve"
    } else if lower.contains("certificate") || lower.contains("tls") {
        "the TLS handshake failed (http:// or https://? a trusted certificate?)"
    } else if lower.contains("refused") {
        "the connection was refused (nothing listens on that port)"
    } else {
        "no connection could be made"
    };
    format!(
        "cannot reach {target}: {why}; check the endpoint (endpoint= or AWS_ENDPOINT_URL), that \
         the server runs there, and path_style"
    )
}

/// Sorts a failure into what the caller should do about it.
pub fn classify(status: Option<u16>, code: Option<&str>, context: &str) -> BackendErrorKind {
    match (status, code) {
        (_, Some("NoSuchBucket")) => BackendErrorKind::NoSuchBucket,
        (
            _,
            Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" | "ExpiredToken"),
        ) => BackendErrorKind::AccessDenied,
        (Some(403), _) => BackendErrorKind::AccessDenied,
        (
            _,
            Some("SlowDown" | "RequestTimeout" | "InternalError" | "ConditionalRequestConflict"),
        ) => BackendErrorKind::Transient,
        (Some(status), _) if status >= 500 || status == 429 || status == 409 => {
            BackendErrorKind::Transient
        }
        // A success whose body could not be read or parsed: cut off in transit.
        (Some(status), _) if (200..300).contains(&status) => BackendErrorKind::Transient,
        (Some(_), _) => BackendErrorKind::Permanent,
        (None, _) if context.to_ascii_lowercase().contains("credential") => {
            BackendErrorKind::AccessDenied
        }
        (None, _) if is_unreachable(context) => BackendErrorKind::Unreachable,
        // No HTTP reply at all: a timeout, a reset connection.
        (None, _) => BackendErrorKind::Transient,
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    async fn get(&self, key: &str) -> BackendResult<Option<Bytes>> {
        let reply = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        match reply {
            Ok(output) => {
                let body = output.body.collect().await.map_err(|error| BackendError {
                    kind: BackendErrorKind::Transient,
                    operation: "GET",
                    bucket: self.bucket.clone(),
                    key: key.to_string(),
                    status: None,
                    detail: format!("reading the body: {error}"),
                })?;
                Ok(Some(body.into_bytes()))
            }
            Err(error) => {
                let error = self.error("GET", key, error);
                if error.status == Some(404) && error.kind != BackendErrorKind::NoSuchBucket {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
        }
    }

    async fn put(&self, key: &str, body: Bytes) -> BackendResult<()> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body));
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|error| self.error("PUT", key, error))
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> BackendResult<PutOutcome> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .body(ByteStream::from(body));
        match request.send().await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(error) => {
                let error = self.error("PUT If-None-Match", key, error);
                if error.status == Some(412) {
                    Ok(PutOutcome::AlreadyExists)
                } else {
                    Err(error)
                }
            }
        }
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> BackendResult<Vec<ObjectInfo>> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_start_after(start_after.map(str::to_string))
                .set_continuation_token(token.take());
            let page = request
                .send()
                .await
                .map_err(|error| self.error("LIST", prefix, error))?;
            // A listing cut off in transit can still parse: what it lacks is its tail. Servers
            // send KeyCount (before the keys, as S3 does, or after them, as moto does), and
            // the bucket's Name: a count that does not match, or neither, is a cut reply.
            let complete = match page.key_count() {
                Some(count) => usize::try_from(count).ok() == Some(page.contents().len()),
                None => page.name().is_some(),
            };
            if !complete {
                return Err(BackendError {
                    kind: BackendErrorKind::Transient,
                    operation: "LIST",
                    bucket: self.bucket.clone(),
                    key: prefix.to_string(),
                    status: Some(200),
                    detail: format!(
                        "the listing arrived incomplete ({} keys, KeyCount {:?})",
                        page.contents().len(),
                        page.key_count()
                    ),
                });
            }
            objects.extend(page.contents().iter().filter_map(|object| {
                Some(ObjectInfo {
                    key: object.key()?.to_string(),
                    size: object.size().unwrap_or_default().max(0) as u64,
                    modified_ms: object
                        .last_modified()
                        .and_then(|time| time.to_millis().ok())
                        .unwrap_or_default()
                        .max(0) as u64,
                    etag: object
                        .e_tag()
                        .map(|tag| tag.trim_matches('"').to_ascii_lowercase()),
                })
            }));
            match page.next_continuation_token() {
                Some(next) if page.is_truncated().unwrap_or(false) => {
                    token = Some(next.to_string())
                }
                _ => break,
            }
        }
        Ok(objects)
    }

    /// DeleteObjects, 1,000 keys a request; a key the store refused to delete is an error.
    async fn delete(&self, keys: &[String]) -> BackendResult<()> {
        for chunk in keys.chunks(1000) {
            let first = chunk.first().cloned().unwrap_or_default();
            let failed = |status: Option<u16>, detail: String| BackendError {
                kind: BackendErrorKind::Permanent,
                operation: "DELETE",
                bucket: self.bucket.clone(),
                key: first.clone(),
                status,
                detail,
            };
            let objects = chunk
                .iter()
                .filter_map(|key| ObjectIdentifier::builder().key(key).build().ok())
                .collect::<Vec<_>>();
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|error| failed(None, error.to_string()))?;
            let output = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|error| self.error("DELETE", &first, error))?;
            if let Some(refused) = output.errors().first() {
                return Err(BackendError {
                    key: refused.key().unwrap_or_default().to_string(),
                    ..failed(
                        None,
                        format!(
                            "{} of {} keys not deleted: {} {}",
                            output.errors().len(),
                            chunk.len(),
                            refused.code().unwrap_or_default(),
                            refused.message().unwrap_or_default()
                        ),
                    )
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_makes_one_attempt_and_paces_them_only_in_adaptive_mode() {
        let adaptive = sdk_retry(Some(&RetryConfig::adaptive()));
        assert_eq!(adaptive.mode(), RetryMode::Adaptive);
        assert_eq!(adaptive.max_attempts(), 1);
        for configured in [None, Some(RetryConfig::standard().with_max_attempts(5))] {
            let standard = sdk_retry(configured.as_ref());
            assert_eq!(standard.mode(), RetryMode::Standard);
            assert_eq!(standard.max_attempts(), 1);
        }
    }

    #[test]
    fn classification_tells_what_to_do() {
        assert_eq!(
            classify(Some(404), Some("NoSuchBucket"), ""),
            BackendErrorKind::NoSuchBucket
        );
        assert_eq!(
            classify(Some(403), Some("SignatureDoesNotMatch"), ""),
            BackendErrorKind::AccessDenied
        );
        assert_eq!(
            classify(Some(503), Some("SlowDown"), ""),
            BackendErrorKind::Transient
        );
        assert_eq!(
            classify(Some(200), None, "unexpected end of XML"),
            BackendErrorKind::Transient
        );
        assert_eq!(classify(Some(500), None, ""), BackendErrorKind::Transient);
        assert_eq!(
            classify(Some(400), Some("InvalidArgument"), ""),
            BackendErrorKind::Permanent
        );
        assert_eq!(
            classify(None, None, "connection refused"),
            BackendErrorKind::Transient
        );
        assert_eq!(
            classify(None, None, "no credentials in the chain"),
            BackendErrorKind::AccessDenied
        );
    }

    #[test]
    fn an_unreachable_endpoint_is_one_line_naming_it() {
        let refused = "dispatch failure: io error: client error (Connect): tcp connect error: \
                       Connection refused (os error 111)";
        assert_eq!(classify(None, None, refused), BackendErrorKind::Unreachable);
        let message = unreachable("http://127.0.0.1:1 (path-style addressing)", refused);
        assert!(message.contains("http://127.0.0.1:1"), "{message}");
        assert!(message.contains("refused"), "{message}");
        assert!(
            !message.contains('\n') && !message.contains("DispatchFailure"),
            "{message}"
        );
        let dns = "dispatch failure: io error: client error (Connect): dns error: failed to \
                   lookup address information: Name or service not known";
        assert_eq!(classify(None, None, dns), BackendErrorKind::Unreachable);
        assert!(unreachable("x", dns).contains("does not resolve"));
        assert_eq!(
            classify(None, None, "timeout: operation timed out"),
            BackendErrorKind::Transient
        );
    }
}
