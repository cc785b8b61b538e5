//! What readers see: records (one or many, pipelined), event logs, batches, counts by state
//! and time, the change feed, and the limits workers run.

use std::{collections::HashMap, time::Duration};

use futures_util::{StreamExt, future::try_join_all, stream::BoxStream};
use reelq_core::{AccountName, BatchId, JobId, JobState};

use super::{Part, now_unix_ms};
use crate::{JobRecord, Ledger, QueueError};

/// A batch's settings and spend, as `reelq batch report` shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchInfo {
    pub batch_id: BatchId,
    pub name: Option<String>,
    pub created_ms: u64,
    pub total: u64,
    /// Jobs not yet ended (stored, failed, rejected, expired or cancelled).
    pub open: u64,
    pub start_after_ms: Option<u64>,
    pub budget_micros: Option<u64>,
    /// Estimates reserved by submits so far (refused creates given back).
    pub reserved_micros: u64,
    pub low_priority: bool,
}

impl BatchInfo {
    /// The batch's settings and spend from its `P batchinfo:{id}` hash; None if it is empty.
    pub(crate) fn from_fields(batch: BatchId, fields: &HashMap<String, String>) -> Option<Self> {
        if fields.is_empty() {
            return None;
        }
        let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok());
        Some(BatchInfo {
            batch_id: batch,
            name: fields.get("name").cloned(),
            created_ms: number("created_ms").unwrap_or(0),
            total: number("total").unwrap_or(0),
            open: number("open").unwrap_or(0),
            start_after_ms: number("start_after_ms"),
            budget_micros: number("budget_micros"),
            // Reservations are given back with HINCRBY, so a transient negative is possible.
            reserved_micros: fields
                .get("reserved_micros")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
                .max(0) as u64,
            low_priority: fields.get("priority").is_some_and(|p| p == "low"),
        })
    }
}

impl Ledger {
    pub async fn job(&self, job_id: JobId) -> Result<Option<JobRecord>, QueueError> {
        Ok(self.jobs(&[job_id]).await?.pop())
    }

    /// The records of `job_ids` in their order, read in pipelined round trips (one per 500
    /// jobs) instead of one per job; jobs no longer in the ledger are left out.
    pub async fn jobs(&self, job_ids: &[JobId]) -> Result<Vec<JobRecord>, QueueError> {
        let mut found = HashMap::with_capacity(job_ids.len());
        for chunk in job_ids.chunks(crate::ENQUEUE_CHUNK) {
            let rows: Vec<Vec<HashMap<String, String>>> = self
                .in_every_part(|part, pipe| {
                    for job_id in chunk {
                        if self.part_of(&job_id.to_string()).index == part.index {
                            pipe.cmd("HGETALL").arg(part.key(format!("job:{job_id}")));
                        }
                    }
                })
                .await?;
            let of_part = |part: u16| {
                chunk
                    .iter()
                    .filter(move |job_id| self.part_of(&job_id.to_string()).index == part)
            };
            for (part, rows) in rows.into_iter().enumerate() {
                for (job_id, fields) in of_part(part as u16).zip(rows) {
                    if !fields.is_empty() {
                        found.insert(*job_id, JobRecord::from_fields(*job_id, fields)?);
                    }
                }
            }
        }
        Ok(job_ids
            .iter()
            .filter_map(|job_id| found.remove(job_id))
            .collect())
    }

    /// Runs `build`'s commands for every partition, one pipeline per master (the partitions a
    /// master serves share it, on the connection of the first of them), all masters at once;
    /// each partition's replies, in partition order. A partition given no command is not
    /// asked.
    pub(crate) async fn in_every_part<T: redis::FromRedisValue + Default>(
        &self,
        build: impl Fn(&Part, &mut redis::Pipeline),
    ) -> Result<Vec<T>, QueueError> {
        let mut masters: Vec<(String, Vec<&Part>)> = Vec::new();
        for part in self.parts() {
            let master = part.master().await?;
            match masters.iter_mut().find(|(address, _)| *address == master) {
                Some((_, parts)) => parts.push(part),
                None => masters.push((master, vec![part])),
            }
        }
        let per_master = try_join_all(masters.into_iter().map(|(_, parts)| {
            let pipes: Vec<redis::Pipeline> = parts
                .iter()
                .map(|part| {
                    let mut pipe = redis::pipe();
                    build(part, &mut pipe);
                    pipe
                })
                .collect();
            async move {
                // One by one: a master serving one partition, or a joined pipeline refused
                // because a slot moved off its master (`MOVED`): each partition then asks its
                // own connection, which finds the slot's new master.
                let one_by_one = async || {
                    let mut answers = Vec::with_capacity(parts.len());
                    for (part, pipe) in parts.iter().zip(&pipes) {
                        let answer = match pipe.is_empty() {
                            true => T::default(),
                            false => pipe.query_async(&mut part.conn().await?).await?,
                        };
                        answers.push((part.index, answer));
                    }
                    Ok::<_, QueueError>(answers)
                };
                let mut joined = redis::pipe();
                for pipe in &pipes {
                    for command in pipe.cmd_iter() {
                        joined.add_command(command.clone());
                    }
                }
                if parts.len() == 1 || joined.is_empty() {
                    return one_by_one().await;
                }
                let replies = match joined
                    .query_async::<Vec<redis::Value>>(&mut parts[0].conn().await?)
                    .await
                {
                    Ok(replies)
                        if !replies
                            .iter()
                            .any(|reply| matches!(reply, redis::Value::ServerError(_))) =>
                    {
                        replies
                    }
                    _ => return one_by_one().await,
                };
                let mut replies = replies.into_iter();
                let mut answers = Vec::with_capacity(parts.len());
                for (part, pipe) in parts.iter().zip(&pipes) {
                    let answer = match pipe.len() {
                        0 => T::default(),
                        n => {
                            let own = redis::Value::Array(replies.by_ref().take(n).collect());
                            redis::from_redis_value(own).map_err(|err| {
                                QueueError::corrupt("a read of every partition", err)
                            })?
                        }
                    };
                    answers.push((part.index, answer));
                }
                Ok::<_, QueueError>(answers)
            }
        }))
        .await?;
        let mut answers: Vec<(u16, T)> = per_master.into_iter().flatten().collect();
        answers.sort_by_key(|(index, _)| *index);
        Ok(answers.into_iter().map(|(_, answer)| answer).collect())
    }

    /// The job's recent events, oldest first, each `"<unix ms> <state> <detail>"`: the ones
    /// its record keeps (`events` counts them all, `e{n % EVENTS_KEPT}` holds the n-th) after
    /// any a release before ledger schema 3 left in its list (`P log:{id}`, until `reelq
    /// migrate` folds it in).
    pub async fn history(&self, job_id: JobId) -> Result<Vec<String>, QueueError> {
        let part = self.part_of(&job_id.to_string());
        let (mut fields, mut events): (HashMap<String, String>, Vec<String>) = redis::pipe()
            .cmd("HGETALL")
            .arg(part.key(format!("job:{job_id}")))
            .cmd("LRANGE")
            .arg(part.key(format!("log:{job_id}")))
            .arg(0)
            .arg(-1)
            .query_async(&mut part.conn().await?)
            .await?;
        events.extend(crate::record::take_events(&mut fields));
        Ok(events)
    }

    pub async fn batch_jobs(&self, batch: BatchId) -> Result<Vec<JobId>, QueueError> {
        self.batch_jobs_between(batch, 0, -1).await
    }

    /// Up to `limit` of a batch's job ids from the `offset`th on, in enqueue order: a page.
    pub async fn batch_jobs_page(
        &self,
        batch: BatchId,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<JobId>, QueueError> {
        let (start, stop) = (offset as i64, (offset + limit) as i64 - 1);
        self.batch_jobs_between(batch, start, stop).await
    }

    /// The batch's job ids from `start` to `stop` (LRANGE's inclusive indexes).
    async fn batch_jobs_between(
        &self,
        batch: BatchId,
        start: i64,
        stop: i64,
    ) -> Result<Vec<JobId>, QueueError> {
        let part = self.part_of(&batch.to_string());
        let ids: Vec<String> = redis::cmd("LRANGE")
            .arg(part.key(format!("batch:{batch}")))
            .arg(start)
            .arg(stop)
            .query_async(&mut part.conn().await?)
            .await?;
        ids.into_iter()
            .map(|id| id.parse().map_err(|err| QueueError::corrupt(&id, err)))
            .collect()
    }

    /// Number of jobs in each state.
    pub async fn state_counts(&self) -> Result<Vec<(JobState, u64)>, QueueError> {
        let per_part: Vec<Vec<u64>> = self
            .in_every_part(|part, pipe| {
                for state in JobState::ALL {
                    pipe.cmd("ZCARD").arg(part.key(format!("state:{state}")));
                }
            })
            .await?;
        let mut counts = vec![0; JobState::ALL.len()];
        for part in per_part {
            for (total, n) in counts.iter_mut().zip(part) {
                *total += n;
            }
        }
        Ok(JobState::ALL.into_iter().zip(counts).collect())
    }

    /// A live feed of state changes. Pub/sub is lossy across reconnects, so readers also
    /// re-read the ledger now and then; the feed only makes them fast.
    pub async fn changes(&self) -> Result<BoxStream<'static, (JobId, JobState)>, QueueError> {
        let changes = self
            .subscribe("changes")
            .await?
            .filter_map(|payload| async move {
                let (id, state) = payload.split_once(' ')?;
                Some((id.parse().ok()?, state.parse().ok()?))
            });
        Ok(changes.boxed())
    }

    /// Fires whenever jobs are enqueued, so idle workers need not wait for their next look.
    pub async fn wakeups(&self) -> Result<BoxStream<'static, ()>, QueueError> {
        Ok(self.subscribe("wake").await?.map(|_| ()).boxed())
    }

    async fn subscribe(&self, channel: &str) -> Result<BoxStream<'static, String>, QueueError> {
        // Published in every partition's slot; a cluster's pub/sub reaches every node.
        let mut pubsub = self
            .home_connector
            .client()
            .await?
            .get_async_pubsub()
            .await?;
        pubsub.subscribe(self.home_key(channel)).await?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|msg| async move { msg.get_payload::<String>().ok() })
            .boxed())
    }

    /// A batch's settings and spend, or None if there is no such batch.
    pub async fn batch_info(&self, batch: BatchId) -> Result<Option<BatchInfo>, QueueError> {
        let part = self.part_of(&batch.to_string());
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(part.key(format!("batchinfo:{batch}")))
            .query_async(&mut part.conn().await?)
            .await?;
        Ok(BatchInfo::from_fields(batch, &fields))
    }

    /// The most recent batches, newest first.
    pub async fn recent_batches(&self, limit: usize) -> Result<Vec<BatchId>, QueueError> {
        let newest = self.newest_in_every_part("batches", limit).await?;
        Ok(newest
            .iter()
            .filter_map(|(id, _)| id.parse().ok())
            .collect())
    }

    /// The newest `limit` members of a sorted set every partition has, over them all, newest
    /// first.
    async fn newest_in_every_part(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, QueueError> {
        let per_part: Vec<(Vec<(String, u64)>,)> = self
            .in_every_part(|part, pipe| {
                pipe.cmd("ZREVRANGE")
                    .arg(part.key(name))
                    .arg(0)
                    .arg(limit.saturating_sub(1))
                    .arg("WITHSCORES");
            })
            .await?;
        let mut newest: Vec<(String, u64)> = per_part
            .into_iter()
            .flat_map(|(entries,)| entries)
            .collect();
        newest.sort_by(|a, b| (b.1, &b.0).cmp(&(a.1, &a.0)));
        newest.truncate(limit);
        Ok(newest)
    }

    /// Jobs that entered `state` between two unix times (ms).
    pub async fn entered_between(
        &self,
        state: JobState,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<u64, QueueError> {
        let per_part: Vec<(u64,)> = self
            .in_every_part(|part, pipe| {
                pipe.cmd("ZCOUNT")
                    .arg(part.key(format!("state:{state}")))
                    .arg(from_ms)
                    .arg(format!("({to_ms}"));
            })
            .await?;
        Ok(per_part.into_iter().map(|(n,)| n).sum())
    }

    /// Jobs that entered `state` in the last `window` (from its state index).
    pub async fn entered_within(
        &self,
        state: JobState,
        window: Duration,
    ) -> Result<u64, QueueError> {
        let now = now_unix_ms();
        let since = now.saturating_sub(window.as_millis() as u64);
        self.entered_between(state, since, now + 1).await
    }

    /// How long submits to `account` stay paused (after a 429 or an empty account), if they are.
    pub async fn paused_for(&self, account: &AccountName) -> Result<Option<Duration>, QueueError> {
        let ms: i64 = redis::cmd("PTTL")
            .arg(self.home_key(format!("pause:{account}")))
            .query_async(&mut self.home_conn().await?)
            .await?;
        Ok((ms > 0).then(|| Duration::from_millis(ms as u64)))
    }

    /// Jobs due now: what workers would claim if they had free slots.
    pub async fn due_now(&self) -> Result<u64, QueueError> {
        let mut total = 0;
        for part in self.parts() {
            let mut pipe = redis::pipe();
            for queue in self.queues(part).await? {
                pipe.cmd("ZCOUNT").arg(queue).arg("-inf").arg(now_unix_ms());
            }
            let counts: Vec<u64> = pipe.query_async(&mut part.conn().await?).await?;
            total += counts.into_iter().sum::<u64>();
        }
        Ok(total)
    }

    /// Generations of `account` holding an in-flight slot now (expired slots not counted).
    pub async fn in_flight(&self, account: &AccountName) -> Result<u64, QueueError> {
        Ok(redis::cmd("ZCOUNT")
            .arg(self.home_key(format!("inflight:{account}")))
            .arg(format!("({}", now_unix_ms()))
            .arg("+inf")
            .query_async(&mut self.home_conn().await?)
            .await?)
    }

    /// Job ids in `state`, most recently changed first.
    pub async fn jobs_in_state(
        &self,
        state: JobState,
        limit: usize,
    ) -> Result<Vec<JobId>, QueueError> {
        let newest = self
            .newest_in_every_part(&format!("state:{state}"), limit)
            .await?;
        newest
            .into_iter()
            .map(|(id, _)| id.parse().map_err(|err| QueueError::corrupt(&id, err)))
            .collect()
    }

    /// A page of jobs in any of `states`, most recently changed first: up to `limit` ids with
    /// the time of their last change, starting after `after` (the last entry of the previous
    /// page). A job that changes state between pages may show twice or not at all, as in
    /// any live listing.
    pub async fn jobs_page(
        &self,
        states: &[JobState],
        after: Option<PageCursor>,
        limit: usize,
    ) -> Result<Vec<PageCursor>, QueueError> {
        let max = after.map_or("+inf".to_owned(), |cursor| cursor.changed_ms.to_string());
        let per_part: Vec<Vec<Vec<(String, u64)>>> = self
            .in_every_part(|part, pipe| {
                for state in states {
                    // Entries sharing the cursor's time are fetched again and the ones up to
                    // it dropped below, so ties at one millisecond are neither lost nor
                    // repeated.
                    pipe.cmd("ZREVRANGEBYSCORE")
                        .arg(part.key(format!("state:{state}")))
                        .arg(&max)
                        .arg("-inf")
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit + 64);
                }
            })
            .await?;
        let mut entries = Vec::new();
        for (id, changed_ms) in per_part.into_iter().flatten().flatten() {
            let job_id: JobId = id.parse().map_err(|err| QueueError::corrupt(&id, err))?;
            entries.push(PageCursor { changed_ms, job_id });
        }
        // Newest first; within one millisecond by id, descending, as Redis orders them.
        entries.sort_by(|a, b| b.cmp(a));
        entries.retain(|entry| after.is_none_or(|after| *entry < after));
        entries.dedup();
        entries.truncate(limit);
        Ok(entries)
    }
}

/// A position in a listing: a job and when it last changed state. Its text form,
/// `<ms>-<job id>`, is the API's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PageCursor {
    pub changed_ms: u64,
    pub job_id: JobId,
}

impl std::fmt::Display for PageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.changed_ms, self.job_id)
    }
}

impl std::str::FromStr for PageCursor {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        let (ms, id) = text.split_once('-').ok_or(())?;
        Ok(PageCursor {
            changed_ms: ms.parse().map_err(|_| ())?,
            job_id: id.parse().map_err(|_| ())?,
        })
    }
}
