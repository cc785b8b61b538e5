// BullMQ's side of reelq's queue-overhead benchmark (scripts/bench): enqueue one at a time
// and in bulk, then no-op jobs through one minimal worker with the given concurrency, on the
// Redis at REDIS_PORT. Prints one JSON object. Defaults are BullMQ's own (completed jobs are
// kept), as a user would run it.
import { Queue, Worker } from 'bullmq';

const [jobs = 10000, concurrency = 8, singles = 2000] = process.argv.slice(2).map(Number);
const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) };
const seconds = (start) => Number(process.hrtime.bigint() - start) / 1e9;

const queue = new Queue('bench', { connection });
await queue.waitUntilReady();

let start = process.hrtime.bigint();
for (let i = 0; i < singles; i++) {
  await queue.add('noop', { i });
}
const singleRate = singles / seconds(start);
await queue.obliterate({ force: true });

start = process.hrtime.bigint();
await queue.addBulk(Array.from({ length: jobs }, (_, i) => ({ name: 'noop', data: { i } })));
const bulkRate = jobs / seconds(start);

let completed = 0;
let finish;
const done = new Promise((resolve) => { finish = resolve; });
start = process.hrtime.bigint();
const worker = new Worker('bench', async () => {}, { connection, concurrency });
worker.on('completed', () => {
  completed += 1;
  if (completed === jobs) finish();
});
await done;
const processRate = jobs / seconds(start);
await worker.close();
await queue.close();

console.log(JSON.stringify({
  bullmq_version: (await import('bullmq/package.json', { with: { type: 'json' } })).default.version,
  jobs,
  concurrency,
  enqueue_single_per_s: singleRate,
  enqueue_bulk_per_s: bulkRate,
  process_jobs_per_s: processRate,
}));
