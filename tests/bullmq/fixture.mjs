// Creates BullMQ jobs in every state with the real bullmq package, and prints what Queue.getJobCounts() reports,
// so the host's Redis reader can be checked against BullMQ itself.
//
//   node fixture.mjs populate --url redis://127.0.0.1:6379/0 [--prefix bull] [--pause QUEUE]... QUEUE...
//   node fixture.mjs counts   --url redis://127.0.0.1:6379/0 [--prefix bull] QUEUE...
//   node fixture.mjs add      --url redis://127.0.0.1:6379/0 [--prefix bull] --count N QUEUE...
//
// `populate` makes, for the i-th queue (i from 0, so each queue's counts differ): 2+i completed, 1+i failed,
// 3+i active (fetched by a manual worker that keeps their locks and never finishes them), 4+i waiting,
// 2+i prioritized, 5+i delayed (an hour out), and 1+i flows whose parent waits for 2 children (the children
// wait in the same queue). Queues named with --pause are paused after the jobs are added, and get 2 more jobs
// added while paused. It then prints the counts as `counts` does.
//
// `add` adds N waiting jobs to each queue, then prints the counts as `counts` does.
//
// `counts` prints one JSON object: {QUEUE: {waiting, prioritized, paused, active, delayed, failed,
// "waiting-children", completed, isPaused, oldestWaitingReadyMs}}, the last being when the job BullMQ takes next
// from the wait list became ready (its timestamp plus delay; null when none waits). `populate` adds `added`, the
// number of jobs it added, flow jobs included. Note that getJobCounts pops a legacy `0:` marker off the wait and
// paused lists: run it after the reader under test.

import { FlowProducer, Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const STATES = ['waiting', 'prioritized', 'paused', 'active', 'delayed', 'failed', 'waiting-children', 'completed'];
const HOUR_MS = 3_600_000;

function parseArgs(argv) {
  const [command, ...rest] = argv;
  const options = { command, url: undefined, prefix: 'bull', pause: new Set(), queues: [], count: 0 };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === '--url') options.url = rest[++i];
    else if (arg === '--prefix') options.prefix = rest[++i];
    else if (arg === '--pause') options.pause.add(rest[++i]);
    else if (arg === '--count') options.count = Number(rest[++i]);
    else options.queues.push(arg);
  }
  if (!['populate', 'counts', 'add'].includes(command) || !options.url || options.queues.length === 0) {
    throw new Error('usage: fixture.mjs populate|counts|add --url URL [--prefix P] [--pause QUEUE]... [--count N] QUEUE...');
  }
  return options;
}

async function populate(connection, prefix, name, index, paused) {
  const queue = new Queue(name, { connection, prefix });
  let added = 0;
  const add = (...args) => {
    added += 1;
    return queue.add(...args);
  };
  // A manual worker (no processor) fetches jobs only when asked, so the jobs it takes stay active.
  const worker = new Worker(name, null, { connection, prefix, lockDuration: HOUR_MS, autorun: false });
  const token = `fixture-${name}`;
  const completed = 2 + index;
  const failed = 1 + index;
  const active = 3 + index;

  for (let n = 0; n < completed + failed + active; n++) {
    await add('work', { n }, { removeOnComplete: false, removeOnFail: false });
  }
  for (let n = 0; n < completed + failed + active; n++) {
    const job = await worker.getNextJob(token);
    if (!job) throw new Error(`queue ${name}: expected a job to fetch, got none`);
    if (n < completed) await job.moveToCompleted('done', token, false);
    else if (n < completed + failed) await job.moveToFailed(new Error('fixture failure'), token, false);
  }
  await worker.close();

  for (let n = 0; n < 4 + index; n++) await add('waiting', { n });
  for (let n = 0; n < 2 + index; n++) await add('prioritized', { n }, { priority: 1 + n });
  for (let n = 0; n < 5 + index; n++) await add('delayed', { n }, { delay: HOUR_MS });

  const flows = new FlowProducer({ connection, prefix });
  for (let n = 0; n < 1 + index; n++) {
    added += 3; // the parent and its two children take ids from the same counter
    await flows.add({
      name: 'parent',
      queueName: name,
      data: { n },
      children: [
        { name: 'child', queueName: name, data: { n, c: 0 } },
        { name: 'child', queueName: name, data: { n, c: 1 } },
      ],
    });
  }
  await flows.close();

  if (paused) {
    await queue.pause();
    await add('added-while-paused', { n: 0 });
    await add('added-while-paused', { n: 1 });
  }
  await queue.close();
  return added;
}

async function counts(connection, prefix, names) {
  const out = {};
  for (const name of names) {
    const queue = new Queue(name, { connection, prefix });
    const [oldest] = await queue.getJobs(['wait'], 0, 0, true);
    out[name] = {
      ...(await queue.getJobCounts(...STATES)),
      isPaused: await queue.isPaused(),
      oldestWaitingReadyMs: oldest ? oldest.timestamp + (oldest.delay ?? 0) : null,
    };
    await queue.close();
  }
  return out;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const connection = new IORedis(options.url, { maxRetriesPerRequest: null });
  try {
    const added = {};
    if (options.command === 'populate') {
      for (const [index, name] of options.queues.entries()) {
        added[name] = await populate(connection, options.prefix, name, index, options.pause.has(name));
      }
    }
    if (options.command === 'add') {
      for (const name of options.queues) {
        const queue = new Queue(name, { connection, prefix: options.prefix });
        await queue.addBulk(Array.from({ length: options.count }, (_, n) => ({ name: 'job', data: { n } })));
        await queue.close();
      }
    }
    const out = await counts(connection, options.prefix, options.queues);
    for (const [name, n] of Object.entries(added)) out[name].added = n;
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    connection.disconnect();
  }
}

main().catch((err) => {
  process.stderr.write(`fixture.mjs: ${err.stack ?? err}\n`);
  process.exit(1);
});
