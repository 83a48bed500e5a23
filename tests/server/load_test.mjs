// Bounded load test of `dsinfer serve` (started by run_openai_test.py with --parallel 8 and a
// small --kv-budget): CLIENTS concurrent streaming clients with the official `openai` client,
// each sending ROUNDS greedy chat requests (a few shared system prompts, so the prefix cache
// is hit and, within the small budget, evicted). Checks: every request succeeds (the client
// never retries; a 429 fails the test), every streamed text equals the same request run one at
// a time afterwards, and the KV bytes in use (polled from /metrics) never exceed the budget.
// Prints the completion throughput concurrent vs one at a time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.DSINFER_SOURCE_DIR, 'tools/npm/package.json'));
const OpenAI = require('openai').default ?? require('openai');

const URL_BASE = process.env.DSINFER_URL;
const CLIENTS = 32, ROUNDS = 2, MAX_TOKENS = 8;
const client = new OpenAI({ baseURL: `${URL_BASE}/v1`, apiKey: process.env.DSINFER_API_KEY,
                            maxRetries: 0, timeout: 120000 });

async function metrics() {
  const text = await (await fetch(`${URL_BASE}/metrics`)).text();
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+) ([-0-9.e+]+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

const SYSTEMS = [0, 1, 2, 3].map((s) =>
  `You are assistant number ${s}. ` + Array.from({ length: 40 }, (_, i) => `rule ${s}-${i}.`).join(' '));

function request(c, r) {
  return {
    model: 'deepseek-v3.2', max_tokens: MAX_TOKENS, temperature: 0, stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'system', content: SYSTEMS[(c + r) % SYSTEMS.length] },
               { role: 'user', content: `Client ${c} asks question ${r}.` }],
  };
}

async function run(params) {
  const stream = await client.chat.completions.create(params);
  let text = '', usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) text += ch.delta.content ?? '';
  }
  assert.ok(usage, 'no usage chunk');
  return { text, usage };
}

test(`load: ${CLIENTS} concurrent streaming clients x ${ROUNDS} requests`, async () => {
  let maxBytes = 0, budget = 0, polling = true;
  const poller = (async () => {
    while (polling) {
      const m = await metrics();
      budget = m.dsinfer_kv_cache_budget_bytes;
      maxBytes = Math.max(maxBytes, m.dsinfer_kv_cache_bytes_in_use);
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  const t0 = performance.now();
  const concurrent = await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
    const out = [];
    for (let r = 0; r < ROUNDS; ++r) out.push(await run(request(c, r)));
    return out;
  }));
  const concurrentMs = performance.now() - t0;
  polling = false;
  await poller;

  const t1 = performance.now();
  const alone = [];
  for (let c = 0; c < CLIENTS; ++c) {
    const out = [];
    for (let r = 0; r < ROUNDS; ++r) out.push(await run(request(c, r)));
    alone.push(out);
  }
  const aloneMs = performance.now() - t1;

  let tokens = 0, hits = 0;
  for (let c = 0; c < CLIENTS; ++c)
    for (let r = 0; r < ROUNDS; ++r) {
      assert.equal(concurrent[c][r].text, alone[c][r].text, `client ${c} request ${r}`);
      assert.equal(concurrent[c][r].usage.completion_tokens, alone[c][r].usage.completion_tokens);
      tokens += concurrent[c][r].usage.completion_tokens;
      hits += concurrent[c][r].usage.prompt_cache_hit_tokens;
    }
  // The worker updates its gauges after the round that ended the last sequence.
  let m = await metrics();
  for (let i = 0; i < 100 && (m.dsinfer_running_sequences || m.dsinfer_kv_cache_referenced_pages); ++i) {
    await new Promise((r) => setTimeout(r, 50));
    m = await metrics();
  }
  assert.ok(budget > 0);
  assert.ok(maxBytes <= budget, `KV bytes ${maxBytes} > budget ${budget}`);
  assert.equal(m.dsinfer_running_sequences, 0);
  assert.equal(m.dsinfer_kv_cache_referenced_pages, 0);
  const tps = (n, ms) => n / (ms / 1000);
  console.log(`load: ${CLIENTS * ROUNDS} requests, ${tokens} completion tokens, ` +
              `${hits} cache-hit prompt tokens; concurrent ${concurrentMs.toFixed(0)} ms ` +
              `(${tps(tokens, concurrentMs).toFixed(1)} tok/s), one at a time ${aloneMs.toFixed(0)} ms ` +
              `(${tps(tokens, aloneMs).toFixed(1)} tok/s), ratio ${(aloneMs / concurrentMs).toFixed(2)}x; ` +
              `peak KV ${maxBytes} of ${budget} bytes, ${m.dsinfer_kv_cache_evictions_total} evictions`);
});
