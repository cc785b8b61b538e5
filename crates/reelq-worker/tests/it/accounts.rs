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

#[tokio::test]
async fn an_operator_pauses_an_account_and_its_resume_sends_the_held_jobs_at_once() {
    let deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    let kie: AccountName = "kie".parse().unwrap();
    deployment
        .client
        .pause_account(&kie, Duration::from_secs(3600))
        .await
        .unwrap();
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let job_ids = deployment.enqueue_manifest(&prompts("paused", 2)).await;

    // The worker's claims hold both back to the pause's end: nothing is due now, nothing
    // was submitted. Nothing announces a hold (no state changes): read again shortly.
    tokio::time::timeout(reelq_testkit::EVENT_TIMEOUT, async {
        while deployment.client.stats().await.unwrap().due_now > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the claims hold the jobs back");
    for job_id in &job_ids {
        let record = deployment.client.status(*job_id).await.unwrap().unwrap();
        assert_eq!(record.state, reelq_core::JobState::Queued);
    }
    assert_eq!(
        deployment.sim.stats().creates,
        0,
        "nothing submitted while paused"
    );

    let resumed = deployment.client.resume_account(&kie).await.unwrap();
    assert_eq!(
        (
            resumed.was_paused,
            resumed.brought_forward,
            resumed.more_left
        ),
        (true, 2, false)
    );
    let records = deployment.settled(&job_ids).await;
    deployment.assert_stored_once(&records);
    let again = deployment.client.resume_account(&kie).await.unwrap();
    assert!(!again.was_paused);
}
