//! The enqueue both POST routes share: durable, idempotent under `Idempotency-Key`.

use super::*;

pub(super) async fn enqueue(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    specs: Vec<JobSpec>,
    batch: Option<BatchOptions>,
) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok());
    let warnings = state.client.lifecycle_notices(&specs);
    let receipt = match (key, &batch) {
        (Some(key), _) => {
            // Keys are per endpoint, and a tenant's are its own: another tenant's use of the
            // same key is neither replayed to it nor refused.
            let endpoint = match batch {
                Some(_) => "api-batches",
                None => "api-jobs",
            };
            let scope = match caller.tenant() {
                Some(tenant) => format!("{endpoint}:{tenant}"),
                None => endpoint.to_owned(),
            };
            state
                .client
                .enqueue_once(specs, batch.as_ref(), (&scope, key), &|_| {})
                .await
        }
        (None, Some(options)) => {
            state
                .client
                .enqueue_batch_with(specs, options)
                .await
                .map(|batch| Receipt {
                    batch_id: Some(batch.batch_id),
                    job_ids: batch.job_ids,
                    replayed: false,
                })
        }
        (None, None) => {
            let spec = specs.into_iter().next().expect("one job");
            state.client.enqueue_spec(spec).await.map(|job_id| Receipt {
                batch_id: None,
                job_ids: vec![job_id],
                replayed: false,
            })
        }
    };
    let receipt = match receipt {
        Ok(receipt) => receipt,
        Err(err) => return internal(err),
    };
    let status = match receipt.replayed {
        true => StatusCode::OK,
        false => StatusCode::CREATED,
    };
    let (location, body) = match (receipt.batch_id, receipt.job_ids.first()) {
        (Some(batch_id), _) => {
            let mut body = json!(receipt);
            if !warnings.is_empty() {
                body["warnings"] = json!(warnings);
            }
            (format!("/v1/batches/{batch_id}"), body)
        }
        (None, Some(&job_id)) => {
            // The job's resource, as `GET /v1/jobs/{id}` answers it (the receipt's
            // `job_ids` kept for clients written against it).
            let record = match state.client.status(job_id).await {
                Ok(Some(record)) => record,
                // Enqueued a moment ago: only a flushed ledger has lost it.
                Ok(None) => return client_error(StatusCode::NOT_FOUND, "not_found", "no such job"),
                Err(err) => return internal(err),
            };
            let answer = JobAnswer {
                record,
                video_url: None,
                job_ids: Some(receipt.job_ids),
                warnings,
            };
            (format!("/v1/jobs/{job_id}"), json!(answer))
        }
        (None, None) => return (status, Json(receipt)).into_response(),
    };
    (status, [(header::LOCATION, location)], Json(body)).into_response()
}
