//! Callbacks the simulator owes: once a task ends it POSTs the provider's completion body to
//! the task's callback URL (or, for OpenAI-style accounts, the account's webhook URL), signed
//! where that provider signs, retrying 3 times after 1, 2 and 4 s (evolink's schedule; kie
//! says 3 retries without gaps), or drops, duplicates or forges it on demand.

use std::{sync::Arc, time::Duration};

use reelq_core::ProviderKind;
use serde_json::Value;

use crate::{
    acedata,
    contract::unix_ms,
    evolink, fal,
    kie::{self, kie_signature},
    openai, replicate,
    simulator::{CallbackMode, SimEvent, SimState},
};

const RETRY_GAPS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// A signing key that is not the account's, as a forger would use.
const FORGED_KIE_KEY: &str = "not-the-account-key";
const FORGED_WHSEC: &str = "whsec_Zm9yZ2VkLWtleS1mb3JnZWQta2V5";

pub(crate) async fn deliver(state: Arc<SimState>, task_id: String, url: String) {
    tokio::time::sleep(state.config.generation_time).await;
    // A held simulator finishes nothing, so it calls nobody back until released.
    let _ = state.held.subscribe().wait_for(|held| !held).await;
    let mode = *state.callback_mode.lock().unwrap();
    let (times, forged) = match mode {
        CallbackMode::Drop => return,
        CallbackMode::Deliver => (1, false),
        CallbackMode::Duplicate(n) => (n, false),
        CallbackMode::Forge => (1, true),
        CallbackMode::Mixed {
            drop_percent,
            duplicate_percent,
        } => {
            let roll = rand::random_range(0..100u8);
            if roll < drop_percent {
                return;
            }
            let duplicated = roll < drop_percent.saturating_add(duplicate_percent);
            (if duplicated { 2 } else { 1 }, false)
        }
    };
    let Some((provider, phase)) = state.task_phase(&task_id) else {
        return;
    };
    let body = match provider {
        ProviderKind::Kie => kie::callback_body(&task_id, &phase),
        ProviderKind::Acedata => {
            match acedata::result_body(&task_id, &phase, &acedata::family_of(&state, &task_id)) {
                Some(body) => body,
                None => return,
            }
        }
        ProviderKind::Evolink => match state.task_record(&task_id) {
            Some(record) => evolink::task_body(&record),
            None => return,
        },
        ProviderKind::Openai => openai::event_body(&task_id, &phase),
        ProviderKind::Replicate => match state.task_record(&task_id) {
            Some(record) => replicate::prediction_body(&state, &record),
            None => return,
        },
        // The Gemini API calls nobody back.
        ProviderKind::Gemini => return,
        ProviderKind::Fal => match state.task_record(&task_id) {
            Some(record) => fal::webhook_body(&record),
            None => return,
        },
    };
    for _ in 0..times {
        send_with_retries(&state, provider, &task_id, &url, &body, forged).await;
    }
}

/// The signature headers `provider` puts on a callback, if the account signs.
fn signature_headers(
    state: &SimState,
    provider: ProviderKind,
    task_id: &str,
    body: &str,
    forged: bool,
) -> Vec<(&'static str, String)> {
    match provider {
        ProviderKind::Kie => {
            let key = match forged {
                true => Some(FORGED_KIE_KEY),
                false => state.config.webhook_hmac_key.as_deref(),
            };
            let Some(key) = key else {
                return vec![];
            };
            let timestamp = (unix_ms() / 1000).to_string();
            let signature = kie_signature(key, task_id, &timestamp);
            vec![
                ("X-Webhook-Timestamp", timestamp),
                ("X-Webhook-Signature", signature),
            ]
        }
        // Replicate signs its webhooks per Standard Webhooks too, with the account's secret.
        ProviderKind::Openai | ProviderKind::Replicate => {
            let secret = match forged {
                true => Some(FORGED_WHSEC),
                false => state.config.webhook_secret.as_deref(),
            };
            secret.map_or_else(Vec::new, |secret| {
                openai::standard_webhook_headers(secret, body).to_vec()
            })
        }
        ProviderKind::Fal => fal::webhook_headers(task_id, body, forged),
        // acedata and evolink do not sign; reelq's per-job URL token authenticates them.
        ProviderKind::Acedata | ProviderKind::Evolink | ProviderKind::Gemini => vec![],
    }
}

async fn send_with_retries(
    state: &SimState,
    provider: ProviderKind,
    task_id: &str,
    url: &str,
    body: &Value,
    forged: bool,
) {
    let body = body.to_string();
    for gap in RETRY_GAPS {
        tokio::time::sleep(gap).await;
        let mut request = state
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone());
        let headers = signature_headers(state, provider, task_id, &body, forged);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let status = request
            .send()
            .await
            .map_or(0, |response| response.status().as_u16());
        if state.config.journal {
            state.journal(crate::journal::callback(
                provider, url, &headers, &body, status,
            ));
        }
        state.emit(SimEvent::CallbackAnswered {
            task_id: task_id.to_owned(),
            status,
        });
        if (200..300).contains(&status) {
            return;
        }
    }
}
