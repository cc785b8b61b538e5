// BullMQ's side of reelq's queue-overhead benchmark (scripts/bench), on the Redis at
// REDIS_PORT. Prints one JSON object. BullMQ's defaults are kept (completed jobs stay), as a
// user would run it.
//   node bench.mjs enqueue JOBS SINGLES   `add` one at a time (awaited), then `addBulk`
//   node bench.mjs process JOBS CONCURRENCY   `addBulk`, then no-op jobs through one worker
import { Queue, Worker } from 'bullmq';

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
