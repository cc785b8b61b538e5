//! Callbacks the simulator owes: once a task ends it POSTs the provider's completion body to
//! the task's callback URL (or, for OpenAI-style accounts, the account's webhook URL), signed
//! where that provider signs, retrying 3 times after 1, 2 and 4 s (evolink's schedule; kie
//! says 3 retries without gaps), or drops, duplicates or forges it on demand.

use std::{sync::Arc, time::Duration};

use reelq_core::ProviderKind;
use serde_json::Value;

use crate::{
    contracts,
    simulator::{CallbackMode, SimEvent, SimState},
};

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
    let Some(body) = (contracts::contract(provider).callback_body)(&state, &task_id, &phase) else {
        return;
    };
    for _ in 0..times {
        send_with_retries(&state, provider, &task_id, &url, &body, forged).await;
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
        let headers =
            (contracts::contract(provider).callback_headers)(state, task_id, &body, forged);
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
