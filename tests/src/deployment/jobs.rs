//! The jobs a test puts through a deployment: enqueued across providers (with webhooks or
//! not), waited for, and checked stored once each.

use super::*;

impl Deployment {
    /// Enqueues one job per prompt for [`Deployment::provider`]'s first model.
    pub async fn enqueue_manifest(&self, prompts: &[String]) -> Vec<JobId> {
        self.enqueue_across(prompts, &[self.provider]).await
    }

    /// Enqueues one job per prompt, the providers taken in turn (each its first model).
    pub async fn enqueue_across(
        &self,
        prompts: &[String],
        providers: &[ProviderKind],
    ) -> Vec<JobId> {
        let manifest: String = prompts
            .iter()
            .zip(providers.iter().cycle())
            .map(|(prompt, &provider)| {
                let model = self.first_model(provider);
                format!("{{\"provider\":\"{provider}\",\"model\":\"{model}\",\"prompt\":\"{prompt}\"}}\n")
            })
            .collect();
        self.enqueue_lines(&manifest).await
    }

    /// Enqueues one job per prompt, each naming `route` of the catalog.
    pub async fn enqueue_routed(&self, route: &str, prompts: &[String]) -> Vec<JobId> {
        let manifest: String = prompts
            .iter()
            .map(|prompt| {
                serde_json::json!({ "route": route, "prompt": prompt }).to_string() + "\n"
            })
            .collect();
        self.enqueue_lines(&manifest).await
    }

    /// Enqueues a JSONL manifest as one batch (under [`RedisSetup::ClusterPartitioned`], as
    /// batches of [`PARTITIONED_BATCH`] jobs, each in the client's next partition in turn).
    async fn enqueue_lines(&self, manifest: &str) -> Vec<JobId> {
        let size = match self.redis_setup {
            RedisSetup::ClusterPartitioned => PARTITIONED_BATCH,
            _ => usize::MAX,
        };
        let lines: Vec<&str> = manifest.lines().collect();
        let mut job_ids = Vec::with_capacity(lines.len());
        for chunk in lines.chunks(size) {
            let batch = chunk.join("\n") + "\n";
            // A batch without an idempotency key: the client's next partition in turn.
            let receipt = self
                .client
                .enqueue_manifest(&batch)
                .await
                .expect("manifest enqueues");
            job_ids.extend(receipt.job_ids);
        }
        job_ids
    }

    /// Turns on completion webhooks, signed with [`crate::NOTIFY_SECRET`], for workers
    /// spawned from now on.
    /// Turns completion webhooks on, allowed to reach this test's loopback receivers over
    /// plain http (refused by default).
    pub fn enable_notify(&mut self) {
        self.extra_config += &format!(
            "[notify]\nsecret = \"{}\"\nallow_http = true\nallow = [\"127.0.0.0/8\"]\n",
            crate::NOTIFY_SECRET
        );
    }

    /// The first model of [`Deployment::provider`], the one jobs are enqueued for.
    pub fn model(&self) -> &str {
        self.first_model(self.provider)
    }

    /// The first model of `provider` this deployment's catalog takes jobs for (retired rows
    /// stay in it, refused).
    pub fn first_model(&self, provider: ProviderKind) -> &str {
        &self
            .client
            .catalog()
            .models_of(provider)
            .find(|rule| rule.status.takes_jobs())
            .expect("every provider has a live model")
            .model
    }

    /// A batch of one job per prompt, for [`Deployment::provider`]'s first model, reporting
    /// its end to `notify_url` (named `name` if given).
    pub async fn enqueue_batch_notified(
        &self,
        prompts: &[&str],
        name: Option<&str>,
        notify_url: &str,
    ) -> reelq_producer::BatchReceipt {
        let specs = prompts
            .iter()
            .map(|prompt| {
                JobRequest {
                    provider: Some(self.provider.to_string()),
                    model: Some(self.model().into()),
                    prompt: Some((*prompt).into()),
                    ..JobRequest::default()
                }
                .validate(self.client.catalog(), 0)
                .expect("a valid job")
            })
            .collect();
        let options = reelq_core::BatchOptions {
            name: name.map(Into::into),
            notify_url: Some(notify_url.into()),
            ..Default::default()
        };
        self.client
            .enqueue_batch_with(specs, &options)
            .await
            .expect("the batch enqueues")
    }

    /// Enqueues one job that reports its ending to `notify_url`.
    pub async fn enqueue_notified(&self, prompt: &str, notify_url: &str) -> JobId {
        let request = JobRequest {
            provider: Some(self.provider.to_string()),
            model: Some(self.model().into()),
            prompt: Some(prompt.into()),
            notify_url: Some(notify_url.into()),
            ..JobRequest::default()
        };
        self.client.enqueue(request).await.expect("job enqueues")
    }

    /// Waits (on the ledger's change feed, with a timeout) until every job has settled.
    pub async fn settled(&self, job_ids: &[JobId]) -> Vec<JobRecord> {
        tokio::time::timeout(EVENT_TIMEOUT, self.client.wait(job_ids, |_| {}))
            .await
            .expect("jobs settle in time")
            .expect("ledger readable")
    }

    /// Asserts what a user checks after a run: every job stored, each submitted once, and
    /// the provider saw exactly one paid create per job.
    #[track_caller]
    pub fn assert_stored_once(&self, records: &[JobRecord]) {
        for record in records {
            let (job_id, error) = (record.job_id, &record.error);
            assert_eq!(
                record.state,
                JobState::Stored,
                "job {job_id} ended {error:?}"
            );
            assert_eq!(record.submits, 1, "job {job_id} submit attempts");
        }
        let stats = self.sim.stats();
        let expected = (records.len() as u64, 1);
        assert_eq!((stats.creates, stats.max_creates_per_fingerprint), expected);
    }

    /// Waits until every job is in `state`.
    pub async fn all_in(&self, job_ids: &[JobId], state: JobState) {
        let mut changes = self.ledger.changes().await.unwrap();
        let wait = async {
            loop {
                let mut all = true;
                for &job_id in job_ids {
                    all &= self.ledger.job(job_id).await.unwrap().unwrap().state == state;
                }
                if all {
                    return;
                }
                changes.next().await.expect("change feed open");
            }
        };
        tokio::time::timeout(EVENT_TIMEOUT, wait)
            .await
            .expect("jobs reach the state in time");
    }
}
