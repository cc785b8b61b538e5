//! Several accounts of one provider: two kie keys side by side, each with its own in-flight
//! limit. Jobs that name the provider spread over both accounts, as far as each one's limit
//! allows; a job that names an account goes to that account alone.

use std::time::Duration;

use reelq_core::{AccountName, JobRequest, ProviderKind};
use reelq_e2e::{API_KEY, Deployment, SECOND_API_KEY, prompts};

fn kie_account(name: &str, deployment: &Deployment, api_key: &str, max_in_flight: u32) -> String {
    format!(
        "[accounts.{name}]\ncontract = \"kie\"\nbase_url = \"{}\"\napi_key = \"{api_key}\"\n\
         request_timeout_ms = 5000\nfirst_poll_ms = 100\npoll_max_ms = 300\n\
         max_in_flight = {max_in_flight}\nin_flight_slot_ttl_ms = 60000\n",
        deployment.sim.base_url()
    )
}

#[tokio::test]
async fn two_kie_accounts_run_side_by_side_each_within_its_own_limit() {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(300),
    )
    .await;
    deployment.contract_accounts = vec![ProviderKind::Acedata, ProviderKind::Evolink];
    deployment.named_accounts = kie_account("kie_a", &deployment, API_KEY, 1)
        + &kie_account("kie_b", &deployment, SECOND_API_KEY, 2);
    let _worker = deployment.spawn_worker_process("w");

    let mut job_ids = deployment.enqueue_manifest(&prompts("kie", 12)).await;
    let kie_b: AccountName = "kie_b".parse().unwrap();
    let mut pinned = Vec::new();
    for n in 0..2 {
        let request = JobRequest {
            provider: Some("kie".into()),
            account: Some("kie_b".into()),
            model: Some(deployment.model().into()),
            prompt: Some(format!("pinned scene {n}")),
            ..JobRequest::default()
        };
        pinned.push(deployment.client.enqueue(request).await.unwrap());
    }
    job_ids.extend(&pinned);

    let records = deployment.settled(&job_ids).await;
    deployment.assert_stored_once(&records);
    // Each key's generations in flight reached its account's limit and never passed it.
    assert_eq!(
        deployment.sim.stats().max_in_flight_per_account,
        [1, 2],
        "kie_a (the first key) at most 1, kie_b (the second) at most 2"
    );
    let kie_a: AccountName = "kie_a".parse().unwrap();
    for record in &records {
        if pinned.contains(&record.job_id) {
            assert_eq!(record.account, kie_b, "a job naming kie_b stays on it");
        } else {
            assert!(
                record.account == kie_a || record.account == kie_b,
                "{:?}",
                record.account
            );
        }
    }
    for account in [&kie_a, &kie_b] {
        let served = records.iter().filter(|r| r.account == *account).count();
        assert!(served >= 2, "{account} served {served} of the jobs");
    }
}
