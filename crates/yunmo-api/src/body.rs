//! Request bodies: the one reader every route that buffers a body uses, and the server-wide budget of
//! request bytes held in memory.
//!
//! A body is refused with 413 before anything is read when its declared `Content-Length` passes the
//! route's limit, and as soon as the bytes read pass it otherwise. `Content-Encoding: gzip` or `deflate`
//! (what `tritonclient` sends with `request_compression_algorithm`) is decoded off the async runtime, with
//! the same limit applied to the decoded bytes; any other encoding is refused with 415.
//!
//! Every byte held is charged to the [`InflightBudget`] (`server.max_inflight_bytes`): the body as it is
//! read, its decoded form, and the tensors decoded from JSON. A request that would pass the budget is
//! refused at once with 429 and `Retry-After`, before it allocates more, so the memory all requests in
//! flight hold together stays bounded whatever their number.

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use yunmo_service::{Code, ServiceError};

use crate::AppState;

/// The bytes of request data the server may hold at once, across all requests.
#[derive(Clone)]
pub struct InflightBudget {
    semaphore: Arc<Semaphore>,
    total: usize,
}

/// Bytes charged to the budget; they are given back when this is dropped.
#[derive(Default)]
pub struct Charge(Option<OwnedSemaphorePermit>);

impl Charge {
    /// Adds `other` to this charge.
    pub fn merge(&mut self, other: Charge) {
        match (&mut self.0, other.0) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

impl InflightBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> InflightBudget {
        let total = total.min(Semaphore::MAX_PERMITS);
        InflightBudget { semaphore: Arc::new(Semaphore::new(total)), total }
    }

    /// Bytes charged now.
    pub fn held(&self) -> usize {
        self.total - self.semaphore.available_permits()
    }

    /// Charges `bytes`, or refuses with `overloaded` (429, `Retry-After`) when the budget has not that much left.
    pub fn charge(&self, bytes: usize) -> Result<Charge, ServiceError> {
        if bytes == 0 {
            return Ok(Charge::default());
        }
        let refused = || {
            ServiceError::new(
                Code::Overloaded,
                format!("the server holds as much request data as server.max_inflight_bytes = {} allows; retry shortly", self.total),
            )
        };
        let permits = u32::try_from(bytes).map_err(|_| refused())?;
        self.semaphore.clone().try_acquire_many_owned(permits).map(|permit| Charge(Some(permit))).map_err(|_| refused())
    }
}

/// How a body may be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Deflate,
}

fn content_encoding(headers: &HeaderMap) -> Result<Encoding, ServiceError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else { return Ok(Encoding::Identity) };
    match value.to_str().map(|text| text.trim().to_ascii_lowercase()).as_deref() {
        Ok("" | "identity") => Ok(Encoding::Identity),
        Ok("gzip" | "x-gzip") => Ok(Encoding::Gzip),
        Ok("deflate") => Ok(Encoding::Deflate),
        _ => Err(ServiceError::new(
            Code::UnsupportedMediaType,
            format!("Content-Encoding {value:?} is not supported: send the body as is, gzip or deflate"),
        )),
    }
}

/// The declared `Content-Length`, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// A limit on a body and the setting that sets it (named in the 413).
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Most bytes, before and after decoding.
    pub bytes: usize,
    /// The setting, e.g. `server.max_body_bytes`.
    pub setting: &'static str,
}

impl Limit {
    /// The limit of inference bodies (`server.max_body_bytes`).
    pub fn inference(config: &crate::ApiConfig) -> Limit {
        Limit { bytes: config.max_body_bytes, setting: "server.max_body_bytes" }
    }

    /// The limit of the management API's JSON bodies (`server.max_json_bytes`).
    pub fn json(config: &crate::ApiConfig) -> Limit {
        Limit { bytes: config.max_json_bytes, setting: "server.max_json_bytes" }
    }

    fn too_large(&self, what: &str) -> ServiceError {
        ServiceError::new(Code::PayloadTooLarge, format!("{what} is larger than {} = {}", self.setting, self.bytes))
    }

    /// Refuses a body whose declared length passes the limit, before any of it is read.
    pub fn check_declared(&self, headers: &HeaderMap) -> Result<(), ServiceError> {
        match content_length(headers) {
            Some(length) if length > self.bytes as u64 => Err(self.too_large("the request body")),
            _ => Ok(()),
        }
    }
}

/// Reads a whole body within `limit`, decoding its `Content-Encoding`, and charges what it holds to the
/// server's budget. The charge must live as long as the bytes (or what is decoded from them).
pub async fn read_body(state: &AppState, headers: &HeaderMap, body: Body, limit: Limit) -> Result<(Bytes, Charge), ServiceError> {
    let encoding = content_encoding(headers)?;
    limit.check_declared(headers)?;
    let mut charge = Charge::default();
    let mut stream = body.into_data_stream();
    let mut buffer = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| ServiceError::invalid(format!("cannot read the request body: {error}")))?;
        if buffer.len() + chunk.len() > limit.bytes {
            return Err(limit.too_large("the request body"));
        }
        charge.merge(state.budget.charge(chunk.len())?);
        if buffer.is_empty() {
            // The common case, one chunk: keep it without copying.
            buffer = BytesMut::from(chunk);
        } else {
            buffer.extend_from_slice(&chunk);
        }
    }
    let bytes = buffer.freeze();
    if encoding == Encoding::Identity {
        return Ok((bytes, charge));
    }
    let budget = state.budget.clone();
    let (decoded, decoded_charge) = tokio::task::spawn_blocking(move || decode(encoding, &bytes, limit, &budget))
        .await
        .map_err(|error| ServiceError::internal(format!("decompression panicked: {error}")))??;
    // The compressed bytes are freed here; the decoded ones stay charged.
    Ok((decoded, decoded_charge))
}

/// Decompresses `compressed`, stopping at `limit` decoded bytes; charges the output as it grows.
fn decode(encoding: Encoding, compressed: &[u8], limit: Limit, budget: &InflightBudget) -> Result<(Bytes, Charge), ServiceError> {
    let mut reader: Box<dyn Read> = match encoding {
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
        Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(compressed)),
        Encoding::Identity => unreachable!("identity bodies are not decoded"),
    };
    let name = if encoding == Encoding::Gzip { "gzip" } else { "deflate" };
    let mut out = Vec::new();
    let mut charge = Charge::default();
    let mut block = vec![0u8; 64 << 10];
    loop {
        let read = reader
            .read(&mut block)
            .map_err(|error| ServiceError::invalid(format!("the body is not valid {name} (Content-Encoding: {name}): {error}")))?;
        if read == 0 {
            return Ok((Bytes::from(out), charge));
        }
        if out.len() + read > limit.bytes {
            return Err(limit.too_large(&format!("the {name}-decoded request body")));
        }
        charge.merge(budget.charge(read)?);
        out.extend_from_slice(&block[..read]);
    }
}

/// A JSON body not yet read: handlers check the caller's rights first and read it after
/// (`server.max_json_bytes`), so that nobody without them can make the server buffer or parse anything.
pub struct LazyJson<T> {
    headers: HeaderMap,
    body: Body,
    marker: std::marker::PhantomData<fn() -> T>,
}

impl<T, S: Send + Sync> axum::extract::FromRequest<S> for LazyJson<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: axum::extract::Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        Ok(LazyJson { headers: parts.headers, body, marker: std::marker::PhantomData })
    }
}

impl<T: for<'de> Deserialize<'de>> LazyJson<T> {
    /// Reads a body that may be empty (the default), as Triton's repository extension allows, with any
    /// content type; otherwise as [`LazyJson::read`].
    pub async fn read_optional(self, state: &AppState) -> Result<T, ServiceError>
    where
        T: Default,
    {
        let (bytes, _charge) = read_body(state, &self.headers, self.body, Limit::json(&state.config)).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        parse_json(&bytes)
    }

    /// Reads and parses the body; errors name the JSON path of the bad field.
    pub async fn read(self, state: &AppState) -> Result<T, ServiceError> {
        let is_json = self.headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(|value| {
            let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        });
        if !is_json {
            return Err(ServiceError::new(Code::UnsupportedMediaType, "the body must be JSON, sent with 'Content-Type: application/json'"));
        }
        let (bytes, _charge) = read_body(state, &self.headers, self.body, Limit::json(&state.config)).await?;
        parse_json(&bytes)
    }
}

/// Parses a JSON object (every JSON body Yunmo reads is one; serde alone would also read a struct from an
/// array); the error names the path of the field that failed and why.
pub fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ServiceError> {
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ServiceError::invalid("the body must be a JSON object"));
    }
    parse_json_as(bytes, "invalid JSON body")
}

/// Parses JSON text; the error starts with `what` and names the path of the field that failed and why.
pub fn parse_json_as<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, ServiceError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let at = if path == "." { String::new() } else { format!(" at '{path}'") };
        ServiceError::invalid(format!("{what}{at}: {}", error.inner()))
    })?;
    deserializer.end().map_err(|error| ServiceError::invalid(format!("{what}: {error}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_version_config_error_names_the_field() {
        let error = parse_json_as::<crate::admin::VersionConfigDto>(br#"{"flash_attention": "of"}"#, "config").unwrap_err();
        assert!(error.message.starts_with("config at 'flash_attention': unknown variant `of`"), "{}", error.message);
        let error = parse_json_as::<crate::admin::VersionConfigDto>(br#"{"kv_cache_type": "f16"} x"#, "config").unwrap_err();
        assert!(error.message.starts_with("config: trailing characters"), "{}", error.message);
    }

    #[test]
    fn the_budget_refuses_past_its_total_and_refills_on_drop() {
        let budget = InflightBudget::new(100);
        let mut held = budget.charge(60).unwrap();
        held.merge(budget.charge(40).unwrap());
        let error = budget.charge(1).err().expect("the budget is spent");
        assert_eq!(error.code, Code::Overloaded);
        assert!(error.message.contains("server.max_inflight_bytes = 100"), "{}", error.message);
        drop(held);
        assert!(budget.charge(100).is_ok());
    }

    #[test]
    fn compressed_bodies_decode_within_the_limit() {
        let text = b"{\"inputs\": []}".repeat(1000);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&text).unwrap();
        let gzip = gzip.finish().unwrap();
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(&text).unwrap();
        let zlib = zlib.finish().unwrap();
        let budget = InflightBudget::new(1 << 20);
        let roomy = Limit { bytes: 1 << 20, setting: "server.max_body_bytes" };
        for (encoding, compressed) in [(Encoding::Gzip, &gzip), (Encoding::Deflate, &zlib)] {
            let (decoded, _charge) = decode(encoding, compressed, roomy, &budget).unwrap();
            assert_eq!(decoded.as_ref(), text.as_slice());
            let tight = Limit { bytes: text.len() - 1, setting: "server.max_body_bytes" };
            let error = decode(encoding, compressed, tight, &budget).err().unwrap();
            assert_eq!(error.code, Code::PayloadTooLarge, "a decompression bomb stops at the limit");
        }
        let error = decode(Encoding::Gzip, b"not gzip", roomy, &budget).err().unwrap();
        assert_eq!(error.code, Code::InvalidRequest);
    }
}
