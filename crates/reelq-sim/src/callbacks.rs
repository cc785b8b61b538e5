//! Callbacks the simulator owes: once a task finishes it POSTs kie's completion body to the
//! task's `callBackUrl` (signed when the account has a webhook key), retrying 3 times after
//! 1, 2 and 4 s as kie does, or drops, duplicates or forges it on demand.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::json;

use crate::{
    kie::{kie_signature, result_url},
    simulator::{CallbackMode, SimEvent, SimState},
};

/// kie retries a failed callback 3 times; the gaps are ours (kie does not say).
const RETRY_GAPS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

pub(crate) async fn deliver(state: Arc<SimState>, task_id: String, url: String) {
    tokio::time::sleep(state.config.generation_time).await;
    // A held simulator finishes nothing, so it calls nobody back until released.
    let _ = state.held.subscribe().wait_for(|held| !held).await;
    let mode = *state.callback_mode.lock().unwrap();
    let (times, key) = match mode {
        CallbackMode::Drop => return,
        CallbackMode::Deliver => (1, state.config.webhook_hmac_key.clone()),
        CallbackMode::Duplicate(n) => (n, state.config.webhook_hmac_key.clone()),
        CallbackMode::Forge => (1, Some("not-the-account-key".to_owned())),
        CallbackMode::Mixed {
            drop_percent,
            duplicate_percent,
        } => {
            let roll = rand::random_range(0..100u8);
            if roll < drop_percent {
                return;
            }
            let times = if roll < drop_percent.saturating_add(duplicate_percent) {
                2
            } else {
                1
            };
            (times, state.config.webhook_hmac_key.clone())
        }
    };
    let body = json!({
        "code": 200,
        "msg": "success",
        "data": { "taskId": task_id, "promptJson": "{}", "resultUrls": [result_url(&state, &task_id)] },
    });
    for _ in 0..times {
        send_with_retries(&state, &task_id, &url, &body, key.as_deref()).await;
    }
}

async fn send_with_retries(
    state: &SimState,
    task_id: &str,
    url: &str,
    body: &serde_json::Value,
    key: Option<&str>,
) {
    for gap in RETRY_GAPS {
        tokio::time::sleep(gap).await;
        let mut request = state.http.post(url).json(body);
        if let Some(key) = key {
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                .to_string();
            let signature = kie_signature(key, task_id, &timestamp);
            request = request
                .header("X-Webhook-Timestamp", timestamp)
                .header("X-Webhook-Signature", signature);
        }
        let status = request
            .send()
            .await
            .map_or(0, |response| response.status().as_u16());
        state.emit(SimEvent::CallbackAnswered {
            task_id: task_id.to_owned(),
            status,
        });
        if (200..300).contains(&status) {
            return;
        }
    }
}
