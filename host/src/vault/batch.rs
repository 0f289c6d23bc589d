//! Batch calls: one generic operation, chunked to Vault's limits, up to
//! [`CHUNK_CONCURRENCY`] chunks in flight, results in input order with per-item errors.
//! `encrypt`, `decrypt`, `rewrap` and `hmac` are four [`Operation`]s of it.
//!
//! Built on the transport only: it turns items into request bodies and answers into
//! results, and leaves retries, the token and error mapping to the layer below.

use std::marker::PhantomData;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};

use super::error::{ItemError, VaultError};
use super::transport::{log_warnings, Secrecy, Target, Transport};
use super::wire::{
    self, BatchBody, BatchData, BatchItem, BatchItems, CiphertextItem, Envelope, HmacItem,
    PlaintextItem, ResultItem, BATCH_ENVELOPE_BYTES, PARTIAL_FAILURE_STATUS,
};

/// How many chunks of one large batch call are in flight at once.
const CHUNK_CONCURRENCY: usize = 4;

/// One transit batch operation: its path segment, whether its answers carry secrets,
/// and (by type) what one result item looks like.
pub(crate) struct Operation<R> {
    name: &'static str,
    secrecy: Secrecy,
    result: PhantomData<fn() -> R>,
}

impl<R> Operation<R> {
    const fn new(name: &'static str, secrecy: Secrecy) -> Self {
        Operation {
            name,
            secrecy,
            result: PhantomData,
        }
    }
}

pub(crate) const ENCRYPT: Operation<CiphertextItem> = Operation::new("encrypt", Secrecy::Public);
/// Its answers are plaintexts, among them the envelope data keys being unwrapped.
pub(crate) const DECRYPT: Operation<PlaintextItem> = Operation::new("decrypt", Secrecy::Secret);
pub(crate) const REWRAP: Operation<CiphertextItem> = Operation::new("rewrap", Secrecy::Public);
pub(crate) const HMAC: Operation<HmacItem> = Operation::new("hmac", Secrecy::Public);

impl<R: ResultItem> Operation<R> {
    /// Runs the operation on `items` under `key`, in chunks; results in input order. A
    /// chunk holds at most `max_batch_items` items, `max_batch_bytes` bytes and
    /// OpenBao's limit of JSON strings per request.
    ///
    /// Dropping the future drops every chunk in flight (each counted as cancelled) and
    /// the results gathered so far (secret ones wiped).
    pub(crate) async fn run<I: BatchItem>(
        &self,
        transport: &Transport,
        key: &str,
        items: &[I],
    ) -> Result<Vec<Result<R::Out, ItemError>>, VaultError> {
        let path = transport.op_path(self.name, key)?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let s = &transport.settings;
        let strings_per_item = items.iter().map(BatchItem::strings).max().unwrap_or(1);
        let max_items = s.max_batch_items.min(wire::max_items_by_strings(
            s.max_request_json_strings,
            strings_per_item,
        ));
        let size_of = |i: usize| items[i].wire_len();
        let ranges = wire::chunk_ranges(items.len(), size_of, max_items, s.max_batch_bytes);
        let bodies = ranges.into_iter().map(|r| {
            let estimate = BATCH_ENVELOPE_BYTES + r.clone().map(size_of).sum::<usize>();
            let body = wire::to_json(
                &BatchBody {
                    batch_input: BatchItems(&items[r.clone()]),
                    partial_failure_response_code: PARTIAL_FAILURE_STATUS,
                },
                estimate,
            );
            (r.len(), body)
        });
        let mut out = Vec::with_capacity(items.len());
        let mut chunks = stream::iter(bodies)
            .map(|(len, body)| self.chunk(transport, &path, key, len, body))
            .buffered(CHUNK_CONCURRENCY);
        while let Some(results) = chunks.try_next().await? {
            out.extend(results);
        }
        Ok(out)
    }

    async fn chunk(
        &self,
        transport: &Transport,
        path: &str,
        key: &str,
        expected: usize,
        body: Vec<u8>,
    ) -> Result<Vec<Result<R::Out, ItemError>>, VaultError> {
        let target = Target {
            path,
            key: Some(key),
            auth: true,
            secrecy: self.secrecy,
        };
        let raw = transport
            .send(Method::POST, target, Some(Bytes::from(body)))
            .await?;
        let ok = raw.status.is_success();
        if !ok && raw.status != StatusCode::BAD_REQUEST {
            return Err(transport.error_for(&raw, target));
        }
        // 200/207, or 400 carrying `batch_results` when every item failed.
        let env: Envelope<BatchData<R>> = match serde_json::from_slice(&raw.body) {
            Ok(env) => env,
            Err(e) if ok => {
                return Err(VaultError::Protocol {
                    detail: format!("cannot parse the batch response of {path}: {e}"),
                })
            }
            Err(_) => return Err(transport.error_for(&raw, target)),
        };
        let Some(data) = env.data else {
            return Err(if ok {
                VaultError::Protocol {
                    detail: format!("batch response of {path} has no data.batch_results"),
                }
            } else {
                transport.error_for(&raw, target)
            });
        };
        log_warnings(path, env.warnings.as_deref());
        if data.batch_results.len() != expected {
            return Err(VaultError::Protocol {
                detail: format!(
                    "batch response of {path} has {} results for {expected} items",
                    data.batch_results.len()
                ),
            });
        }
        data.batch_results
            .into_iter()
            .map(|item| {
                item.into_result().map_err(|d| VaultError::Protocol {
                    detail: format!("batch response of {path}: {d}"),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operations whose answers carry plaintext read them into wiped buffers, and
    /// hand out wiped buffers.
    #[test]
    fn decrypt_answers_are_secret_and_wiped() {
        assert_eq!(DECRYPT.secrecy, Secrecy::Secret);
        fn wiped(_: &Operation<impl ResultItem<Out = zeroize::Zeroizing<Vec<u8>>>>) {}
        wiped(&DECRYPT);
        for public in [ENCRYPT.secrecy, REWRAP.secrecy, HMAC.secrecy] {
            assert_eq!(public, Secrecy::Public);
        }
        assert_eq!(
            [ENCRYPT.name, DECRYPT.name, REWRAP.name, HMAC.name],
            ["encrypt", "decrypt", "rewrap", "hmac"]
        );
    }
}
