// BullMQ's side of reelq's queue-overhead benchmark (scripts/bench), on the Redis at
// REDIS_PORT. Prints one JSON object. BullMQ's defaults are kept (completed jobs stay), as a
// user would run it.
//   node bench.mjs enqueue JOBS SINGLES   `add` one at a time (awaited), then `addBulk`
//   node bench.mjs process JOBS CONCURRENCY   `addBulk`, then no-op jobs through one worker
//   node bench.mjs lifecycle JOBS CONCURRENCY   `addBulk`, then reelq's lifecycle through one
//       worker, written BullMQ's documented "process step jobs" way: create the task at the
//       provider simulator (SIM_URL, SIM_KEY: kie's contract), `moveToDelayed` between polls
//       (FIRST_POLL_MS), then download the video, hash it (SHA-256) and write it under OUT_DIR
//       (a temporary name, renamed when whole, as reelq's local store does).
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DelayedError, Queue, UnrecoverableError, Worker } from 'bullmq';

const [mode, ...numbers] = process.argv.slice(2);
const [jobs, second] = numbers.map(Number);
const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) };
const seconds = (start) => Number(process.hrtime.bigint() - start) / 1e9;
const noops = (n) => Array.from({ length: n }, (_, i) => ({ name: 'noop', data: { i } }));

const queue = new Queue('bench', { connection });
await queue.waitUntilReady();
const result = { jobs };

if (mode === 'enqueue') {
  const singles = second;
  let start = process.hrtime.bigint();
  for (let i = 0; i < singles; i++) {
    await queue.add('noop', { i });
  }
  result.enqueue_single_per_s = singles / seconds(start);
  start = process.hrtime.bigint();
  await queue.addBulk(noops(jobs));
  result.enqueue_bulk_per_s = jobs / seconds(start);
} else if (mode === 'lifecycle') {
  const concurrency = second;
  const { SIM_URL: sim, SIM_KEY: key, OUT_DIR: out } = process.env;
  const firstPoll = Number(process.env.FIRST_POLL_MS);
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const kie = async (path, init) => {
    const body = await (await fetch(`${sim}${path}`, { headers, ...init })).json();
    if (body.code !== 200) throw new Error(`kie ${path}: ${body.code} ${body.msg}`);
    return body.data;
  };
  const later = async (job, token, data) => {
    await job.updateData(data);
    await job.moveToDelayed(Date.now() + firstPoll, token);
    throw new DelayedError();
  };
  const store = async (job, url) => {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`download: HTTP ${response.status}`);
    const sha256 = createHash('sha256');
    let bytes = 0;
    const hashing = new Transform({
      transform(chunk, _encoding, done) {
        sha256.update(chunk);
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    const path = `${out}/${job.id}.mp4`;
    await pipeline(Readable.fromWeb(response.body), hashing, createWriteStream(`${path}#1`));
    await rename(`${path}#1`, path);
    return { key: `${job.id}.mp4`, bytes, sha256: sha256.digest('hex') };
  };
  const step = async (job, token) => {
    const data = job.data;
    if (!data.taskId) {
      const input = { prompt: data.prompt, n_frames: '10', aspect_ratio: 'landscape' };
      const body = JSON.stringify({ model: 'sora-2-text-to-video', input });
      const created = await kie('/api/v1/jobs/createTask', { method: 'POST', body });
      return later(job, token, { ...data, taskId: created.taskId });
    }
    const record = await kie(`/api/v1/jobs/recordInfo?taskId=${data.taskId}`);
    if (record.state === 'success') return store(job, JSON.parse(record.resultJson).resultUrls[0]);
    if (record.state === 'fail') throw new UnrecoverableError(record.failMsg);
    return later(job, token, { ...data, polls: (data.polls ?? 0) + 1 });
  };
  const prompts = Array.from({ length: jobs }, (_, i) => ({
    name: 'video',
    data: { prompt: `bench video ${i}` },
    opts: { attempts: 5, backoff: { type: 'exponential', delay: 50 } },
  }));
  await queue.addBulk(prompts);
  let settled = 0;
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  const worker = new Worker('bench', step, { connection, concurrency });
  const count = () => {
    settled += 1;
    if (settled === jobs) finish();
  };
  worker.on('completed', count);
  // A job that failed for good has a finish time; one that will be retried does not.
  worker.on('failed', (job) => {
    if (job?.finishedOn) count();
  });
  await done;
  result.process_jobs_per_s = jobs / seconds(start);
  const used = process.cpuUsage(cpu);
  result.worker_cpu_ms_per_job = (used.user + used.system) / 1000 / jobs;
  result.worker_peak_rss_mib = process.resourceUsage().maxRSS / 1024;
  result.completed = (await queue.getJobCounts('completed')).completed;
  result.concurrency = concurrency;
  await worker.close();
} else {
  const concurrency = second;
  await queue.addBulk(noops(jobs));
  let completed = 0;
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  const start = process.hrtime.bigint();
  const worker = new Worker('bench', async () => {}, { connection, concurrency });
  worker.on('completed', () => {
    completed += 1;
    if (completed === jobs) finish();
  });
  await done;
  result.process_jobs_per_s = jobs / seconds(start);
  result.concurrency = concurrency;
  await worker.close();
}
await queue.close();
console.log(JSON.stringify(result));
