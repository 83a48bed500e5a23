// Black-box tests of `dsinfer serve` with the official `openai` npm client (pinned in
// tools/npm) plus raw fetch for the error cases. Started by run_openai_test.py, which passes
// DSINFER_URL, DSINFER_API_KEY and DSINFER_SOURCE_DIR and runs the server with a test script
// (--test-script) so that reasoning and tool calls come out of a random-weight model:
//   SCRIPT_THINK  → "Let me think.</think>It is 4.<EOS>"
//   SCRIPT_TOOL   → a get_weather(city="Paris") DSML tool call
//   TOOL_RESULT_MARK (in a tool result) → "It is 21 degrees in Paris.<EOS>"
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import net from 'node:net';

const require = createRequire(path.join(process.env.DSINFER_SOURCE_DIR, 'tools/npm/package.json'));
const OpenAI = require('openai').default ?? require('openai');

const URL_BASE = process.env.DSINFER_URL;
const KEY = process.env.DSINFER_API_KEY;
const CTX = Number(process.env.DSINFER_CTX);
const MODEL = 'deepseek-v3.2';
const PRICES = { hit: 0.028, miss: 0.28, output: 0.42 };  // the defaults, USD per 1M

const client = new OpenAI({ baseURL: `${URL_BASE}/v1`, apiKey: KEY, maxRetries: 0, timeout: 60000 });

function checkUsage(u) {
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  assert.equal(u.prompt_cache_hit_tokens % 64, 0);  // whole 64-token pages
  assert.ok(u.prompt_cache_hit_tokens < u.prompt_tokens);  // the last token is always computed
  assert.equal(u.prompt_cache_miss_tokens, u.prompt_tokens - u.prompt_cache_hit_tokens);
  assert.equal(u.prompt_tokens_details.cached_tokens, u.prompt_cache_hit_tokens);
  assert.equal(typeof u.completion_tokens_details.reasoning_tokens, 'number');
  const c = u.cost;
  assert.equal(c.currency, 'USD');
  const close = (a, b) => assert.ok(Math.abs(a - b) <= 1e-12, `${a} vs ${b}`);
  close(c.input_cache_hit, u.prompt_cache_hit_tokens * PRICES.hit / 1e6);
  close(c.input_cache_miss, u.prompt_cache_miss_tokens * PRICES.miss / 1e6);
  close(c.output, u.completion_tokens * PRICES.output / 1e6);
  close(c.total, c.input_cache_hit + c.input_cache_miss + c.output);
}

async function streamChat(params) {
  const stream = await client.chat.completions.create({ ...params, stream: true });
  const out = { content: '', reasoning: '', toolCalls: [], finish: null, usage: null, roles: [] };
  for await (const chunk of stream) {
    if (chunk.usage) out.usage = chunk.usage;
    for (const ch of chunk.choices) {
      const d = ch.delta;
      if (d.role) out.roles.push(d.role);
      if (d.content) out.content += d.content;
      if (d.reasoning_content) out.reasoning += d.reasoning_content;
      for (const tc of d.tool_calls ?? []) {
        const t = (out.toolCalls[tc.index] ??= { id: '', name: '', arguments: '' });
        if (tc.id) t.id = tc.id;
        if (tc.function?.name) t.name += tc.function.name;
        if (tc.function?.arguments) t.arguments += tc.function.arguments;
      }
      if (ch.finish_reason) out.finish = ch.finish_reason;
    }
  }
  return out;
}

async function raw(pathname, { method = 'POST', body, key = KEY, headers = {} } = {}) {
  const h = { 'Content-Type': 'application/json', ...headers };
  if (key) h.Authorization = `Bearer ${key}`;
  const res = await fetch(`${URL_BASE}${pathname}`, {
    method, headers: h, body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, json, text };
}

function assertError(r, status, { code, param } = {}) {
  assert.equal(r.status, status, r.text);
  assert.ok(r.json?.error, r.text);
  assert.equal(typeof r.json.error.message, 'string');
  assert.ok(r.json.error.message.length > 0);
  assert.equal(typeof r.json.error.type, 'string');
  if (code !== undefined) assert.equal(r.json.error.code, code, r.text);
  if (param !== undefined) assert.equal(r.json.error.param, param, r.text);
}

const user = (content) => [{ role: 'user', content }];

test('models list', async () => {
  const list = await client.models.list();
  const ids = list.data.map((m) => m.id);
  assert.deepEqual(ids, [MODEL, `${MODEL}-reasoner`]);
});

test('health and metrics', async () => {
  const h = await raw('/health', { method: 'GET', key: null });
  assert.equal(h.status, 200);
  assert.equal(h.json.status, 'ok');
  const m = await raw('/metrics', { method: 'GET', key: null });
  assert.equal(m.status, 200);
  assert.match(m.text, /^dsinfer_queue_depth \d+$/m);
  assert.match(m.text, /^dsinfer_running_sequences \d+$/m);
  assert.match(m.text, /^dsinfer_requests_total\{status="200"\} \d+$/m);
});

test('chat non-stream and stream agree (greedy), usage with include_usage', async () => {
  const params = { model: MODEL, messages: user('Hello there'), max_tokens: 8, temperature: 0 };
  const r = await client.chat.completions.create(params);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 8);
  checkUsage(r.usage);
  const s = await streamChat({ ...params, stream_options: { include_usage: true } });
  assert.deepEqual(s.roles, ['assistant']);
  assert.equal(s.content, r.choices[0].message.content);
  assert.equal(s.finish, 'length');
  assert.deepEqual(s.usage, r.usage);
  const noUsage = await streamChat(params);
  assert.equal(noUsage.usage, null);
});

test('thinking on: reasoning_content (reasoner alias, thinking flag, chat_template_kwargs)', async () => {
  const variants = [
    { model: `${MODEL}-reasoner` },
    { model: MODEL, thinking: { type: 'enabled' } },
    { model: MODEL, chat_template_kwargs: { thinking: true } },
  ];
  for (const v of variants) {
    const r = await client.chat.completions.create({ ...v, messages: user('SCRIPT_THINK') });
    const msg = r.choices[0].message;
    assert.equal(msg.reasoning_content, 'Let me think.', JSON.stringify(v));
    assert.equal(msg.content, 'It is 4.');
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(r.usage.completion_tokens_details.reasoning_tokens > 0);
    assert.ok(r.usage.completion_tokens_details.reasoning_tokens < r.usage.completion_tokens);
    checkUsage(r.usage);
  }
  const s = await streamChat({ model: `${MODEL}-reasoner`, messages: user('SCRIPT_THINK'),
                               stream_options: { include_usage: true } });
  assert.equal(s.reasoning, 'Let me think.');
  assert.equal(s.content, 'It is 4.');
  assert.equal(s.finish, 'stop');
  checkUsage(s.usage);
});

test('thinking off: no reasoning_content', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: user('SCRIPT_PLAIN') });
  const msg = r.choices[0].message;
  assert.equal(msg.content, 'Plain answer.');
  assert.equal(msg.reasoning_content, undefined);
  assert.equal(r.usage.completion_tokens_details.reasoning_tokens, 0);
});

test('tool-call round trip (tools -> tool_calls -> tool message -> answer)', async () => {
  const tools = [{
    type: 'function',
    function: {
      name: 'get_weather', description: 'Weather of a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  }];
  const messages = user('SCRIPT_TOOL: what is the weather in Paris?');
  const r = await client.chat.completions.create({ model: MODEL, messages, tools, tool_choice: 'auto' });
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  const msg = r.choices[0].message;
  assert.equal(msg.tool_calls.length, 1);
  const call = msg.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
  checkUsage(r.usage);

  const s = await streamChat({ model: MODEL, messages, tools });
  assert.equal(s.finish, 'tool_calls');
  assert.equal(s.toolCalls.length, 1);
  assert.equal(s.toolCalls[0].name, 'get_weather');
  assert.equal(s.toolCalls[0].arguments, call.function.arguments);

  const followUp = [...messages, msg,
    { role: 'tool', tool_call_id: call.id, content: '{"temp_c": 21, "mark": "TOOL_RESULT_MARK"}' }];
  const a = await client.chat.completions.create({ model: MODEL, messages: followUp, tools });
  assert.equal(a.choices[0].finish_reason, 'stop');
  assert.equal(a.choices[0].message.content, 'It is 21 degrees in Paris.');
  assert.ok(a.usage.prompt_tokens > r.usage.prompt_tokens);
  checkUsage(a.usage);
});

test('text completions', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 5);
  checkUsage(r.usage);
});

test('stop sequence', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: user('SCRIPT_PLAIN'), stop: ['answer'] });
  assert.equal(r.choices[0].message.content, 'Plain ');
  assert.equal(r.choices[0].finish_reason, 'stop');
});

// The probe's killers, as raw bodies (JSON.stringify would refuse the depth; --max-body is
// 64 KiB here, so 30,000 levels): each a 400 naming the field, and the server still answers.
test('hostile input: deep nesting, huge max_tokens, out-of-range numbers', async () => {
  const head = `{"model": "${MODEL}", "messages": [{"role": "user", "content": "a"}]`;
  const deep = '['.repeat(30000) + ']'.repeat(30000);
  assertError(await raw('/v1/chat/completions', { body: `${head}, "response_format": ${deep}}` }),
              400, { param: 'response_format[0][0][0][0][0]...' });
  assertError(await raw('/v1/chat/completions', {
    body: `${head}, "tools": [{"type": "function", "function": {"name": "f", "parameters": ${deep}}}]}`,
  }), 400, { param: 'tools[0].function.parameters[0][0]...' });
  for (const n of ['9223372036854775807', '9223372036854775000', '18446744073709551615']) {
    for (const stream of [false, true]) {
      assertError(await raw('/v1/chat/completions', { body: `${head}, "max_tokens": ${n}, "stream": ${stream}}` }),
                  400, { code: 'context_length_exceeded', param: 'max_tokens' });
    }
  }
  for (const n of ['-9223372036854775808', '0', '1.5', '"5"']) {
    assertError(await raw('/v1/chat/completions', { body: `${head}, "max_tokens": ${n}}` }),
                400, { param: 'max_tokens' });
  }
  const big = await raw('/v1/chat/completions', { body: `${head}, "temperature": 1e999}` });
  assertError(big, 400);
  assert.doesNotMatch(big.text, /json\.exception/);
  const ok = await client.chat.completions.create({ model: MODEL, messages: user('a'), max_tokens: 1 });
  assert.equal(ok.usage.completion_tokens, 1);
});

// Raw HTTP/1.1 over a socket: the response's status line, or 'timeout' after `ms`.
function rawHttp(head, { body = '', ms = 3000 } = {}) {
  const url = new URL(URL_BASE);
  return new Promise((resolve) => {
    const sock = net.connect(Number(url.port), url.hostname);
    let data = '';
    const timer = setTimeout(() => { sock.destroy(); resolve('timeout'); }, ms);
    sock.on('data', (d) => {
      data += d;
      if (data.includes('\r\n')) { clearTimeout(timer); sock.destroy(); resolve(data.split('\r\n')[0]); }
    });
    sock.on('error', () => { clearTimeout(timer); resolve('error'); });
    sock.write(head.join('\r\n') + '\r\n\r\n' + body);
  });
}

// Checked on the head, before any body byte is read: the key, the framing, the size. (httplib
// used to read chunked and gzip bodies whole, without a cap, before the key check.)
test('body framing and the key are checked before the body is read', async () => {
  const host = `Host: ${new URL(URL_BASE).host}`;
  const auth = `Authorization: Bearer ${KEY}`;
  const post = 'POST /v1/chat/completions HTTP/1.1';
  // No key, a body announced but never sent: refused at once (the server does not wait for it).
  assert.match(await rawHttp([post, host, 'Content-Type: application/json', 'Content-Length: 60000']), / 401 /);
  assert.match(await rawHttp([post, host, auth, 'Transfer-Encoding: chunked']), / 411 /);
  assert.match(await rawHttp([post, host, auth, 'Content-Encoding: gzip', 'Content-Length: 10']), / 415 /);
  assert.match(await rawHttp([post, host, auth, 'Content-Length: 100000000000']), / 413 /);
  const health = await raw('/health', { method: 'GET' });
  assert.equal(health.status, 200);
});

test('errors: JSON, schema, model, auth, size, context, n, logprobs', async () => {
  const bad = await raw('/v1/chat/completions', { body: '{"model": "x", ' });
  assertError(bad, 400);
  assert.match(bad.json.error.message, /invalid JSON/);
  assertError(await raw('/v1/chat/completions', {
    body: { model: MODEL, messages: [{ role: 'user', content: 'a' }, { role: 'robot', content: 'b' }] },
  }), 400, { param: 'messages[1].role' });
  assertError(await raw('/v1/chat/completions', { body: { model: MODEL } }), 400, { param: 'messages' });
  assertError(await raw('/v1/chat/completions', { body: { model: 'gpt-4o', messages: user('a') } }),
              404, { code: 'model_not_found', param: 'model' });
  assertError(await raw('/v1/chat/completions', { body: { model: MODEL, messages: user('a') }, key: null }),
              401, { code: 'invalid_api_key' });
  assertError(await raw('/v1/chat/completions', { body: { model: MODEL, messages: user('a') }, key: 'wrong' }),
              401, { code: 'invalid_api_key' });
  assertError(await raw('/v1/chat/completions', { body: { model: MODEL, messages: user('x'.repeat(200000)) } }),
              413);
  assertError(await raw('/v1/chat/completions', { body: { model: MODEL, messages: user('a'), max_tokens: CTX } }),
              400, { code: 'context_length_exceeded' });
  assertError(await raw('/v1/chat/completions', { body: { model: MODEL, messages: user('a'), n: 2 } }),
              400, { param: 'n' });
  assertError(await raw('/v1/chat/completions', { body: { model: MODEL, messages: user('a'), logprobs: 'yes' } }),
              400, { param: 'logprobs' });
  assertError(await raw('/v1/chat/completions', { body: { model: MODEL, messages: user('a'), top_logprobs: 2 } }),
              400, { param: 'top_logprobs' });
  assertError(await raw('/v1/completions', { body: { model: MODEL, prompt: 'a', logprobs: 21 } }),
              400, { param: 'logprobs' });
  // The official client maps them to its error classes.
  await assert.rejects(client.chat.completions.create({ model: 'nope', messages: user('a') }),
                       (e) => e instanceof OpenAI.NotFoundError && e.status === 404);
  const anon = new OpenAI({ baseURL: `${URL_BASE}/v1`, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(anon.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
});

test('queue full: 429 with Retry-After, others succeed', async () => {
  // --parallel 2 --queue 2: of 8 simultaneous requests at most 4 are taken.
  const body = { model: MODEL, messages: user('burst'), max_tokens: 12, temperature: 0 };
  const rs = await Promise.all(Array.from({ length: 8 }, () => raw('/v1/chat/completions', { body })));
  const limited = rs.filter((r) => r.status === 429);
  const ok = rs.filter((r) => r.status === 200);
  assert.ok(limited.length >= 1, rs.map((r) => r.status).join(','));
  assert.equal(limited.length + ok.length, 8, rs.map((r) => r.status).join(','));
  for (const r of limited) {
    assertError(r, 429, { code: 'queue_full' });
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
  }
  const texts = new Set(ok.map((r) => r.json.choices[0].message.content));
  assert.equal(texts.size, 1);  // greedy: concurrent requests give identical outputs
});

test('client disconnect mid-stream frees the sequence', async () => {
  const ac = new AbortController();
  const res = await fetch(`${URL_BASE}/v1/chat/completions`, {
    method: 'POST', signal: ac.signal,
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ model: MODEL, messages: user('long story'), max_tokens: 600, stream: true }),
  });
  const reader = res.body.getReader();
  await reader.read();
  ac.abort();
  let m = {};
  for (let i = 0; i < 100; ++i) {
    m = await metrics();
    if (m.dsinfer_running_sequences === 0 && m.dsinfer_queue_depth === 0 &&
        m.dsinfer_kv_cache_referenced_pages === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(m.dsinfer_running_sequences, 0);
  assert.equal(m.dsinfer_kv_cache_referenced_pages, 0);  // its pages were released
  assert.ok(m.dsinfer_requests_cancelled_total >= 1);
});

// The unlabelled samples of /metrics as numbers.
async function metrics() {
  const r = await raw('/metrics', { method: 'GET', key: null });
  assert.equal(r.status, 200);
  const out = {};
  for (const line of r.text.split('\n')) {
    const m = /^([a-z_]+) ([-0-9.e+]+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

function checkTop(entry, n) {
  assert.equal(entry.top_logprobs.length, n);
  for (let i = 0; i < n; ++i) {
    assert.ok(entry.top_logprobs[i].logprob <= 0);
    if (i > 0) assert.ok(entry.top_logprobs[i].logprob <= entry.top_logprobs[i - 1].logprob);
    assert.ok(entry.top_logprobs[i].bytes.every((b) => Number.isInteger(b) && b >= 0 && b < 256));
  }
}

test('logprobs: chat (whole and streamed) and completions (legacy)', async () => {
  const params = { model: MODEL, messages: user('logprobs please'), max_tokens: 6, temperature: 0,
                   logprobs: true, top_logprobs: 5 };
  const r = await client.chat.completions.create(params);
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, r.usage.completion_tokens);
  for (const e of content) {
    assert.ok(e.logprob <= 0 && Number.isFinite(e.logprob));
    assert.ok(Array.isArray(e.bytes));
    checkTop(e, 5);
    // Greedy: the chosen token is the most likely one.
    assert.equal(e.logprob, e.top_logprobs[0].logprob);
    assert.equal(e.token, e.top_logprobs[0].token);
  }
  // Streamed: the same entries, spread over the chunks.
  const stream = await client.chat.completions.create({ ...params, stream: true });
  const streamed = [];
  for await (const chunk of stream)
    for (const ch of chunk.choices) streamed.push(...(ch.logprobs?.content ?? []));
  assert.deepEqual(streamed, content);
  // logprobs without top_logprobs: empty alternatives.
  const r0 = await client.chat.completions.create({ ...params, top_logprobs: undefined });
  for (const e of r0.choices[0].logprobs.content) assert.equal(e.top_logprobs.length, 0);
  // Legacy completions format.
  const t = await client.completions.create({ model: MODEL, prompt: 'The sky', max_tokens: 5,
                                              temperature: 0, logprobs: 3 });
  const lp = t.choices[0].logprobs;
  assert.equal(lp.tokens.length, t.usage.completion_tokens);
  assert.equal(lp.token_logprobs.length, lp.tokens.length);
  assert.equal(lp.text_offset[0], 0);
  for (let i = 0; i < lp.tokens.length; ++i) {
    const alts = Object.values(lp.top_logprobs[i]);
    assert.ok(alts.length >= 1 && alts.length <= 3);
    assert.equal(lp.token_logprobs[i], Math.max(...alts));
    assert.ok(lp.token_logprobs[i] <= 0);
  }
});

test('prefix cache: a shared long system prompt is served from the cache', async () => {
  // A system prompt unique to this run (so earlier tests cannot have cached it), ~700 tokens.
  const words = [];
  for (let i = 0; i < 230; ++i) words.push(`w${(i * 7919 + Date.now()) % 100000}`);
  const system = `Nonce ${Date.now()} ${Math.random()}. ` + words.join(' ');
  const ask = async (question) => {
    const before = await metrics();
    const t0 = performance.now();
    const r = await client.chat.completions.create({
      model: MODEL, max_tokens: 1, temperature: 0,
      messages: [{ role: 'system', content: system }, { role: 'user', content: question }],
    });
    const ms = performance.now() - t0;
    const after = await metrics();
    checkUsage(r.usage);
    return { usage: r.usage, ms,
             computed: after.dsinfer_engine_prompt_tokens_total - before.dsinfer_engine_prompt_tokens_total };
  };
  const first = await ask('First question?');
  const second = await ask('A different second question?');
  assert.equal(first.usage.prompt_cache_hit_tokens, 0);
  // The shared prefix: the prompt up to the user turn (BOS + system text), rounded down to pages.
  const shared = Math.floor((first.usage.prompt_tokens - 10) / 64) * 64;
  assert.ok(shared >= 640, `shared prefix ${shared}`);
  assert.ok(second.usage.prompt_cache_hit_tokens >= shared,
            `hit ${second.usage.prompt_cache_hit_tokens} < ${shared}`);
  assert.equal(second.computed, second.usage.prompt_cache_miss_tokens);
  assert.ok(second.computed < first.computed / 5, `${second.computed} vs ${first.computed}`);
  console.log(`prefix cache: miss ${first.ms.toFixed(0)} ms (${first.computed} prompt tokens ` +
              `computed), hit ${second.ms.toFixed(0)} ms (${second.computed} computed), ` +
              `${(first.ms / second.ms).toFixed(2)}x`);
  assert.ok(second.ms < first.ms, `hit ${second.ms} ms vs miss ${first.ms} ms`);
});

test('metrics: throughput, cache hit ratio and KV pool gauges', async () => {
  const m = await metrics();
  for (const name of ['dsinfer_generation_tokens_per_second', 'dsinfer_prompt_tokens_per_second',
                      'dsinfer_prompt_cache_hit_ratio', 'dsinfer_kv_cache_budget_bytes',
                      'dsinfer_kv_cache_bytes_in_use', 'dsinfer_kv_cache_cached_pages',
                      'dsinfer_kv_cache_referenced_pages'])
    assert.ok(Number.isFinite(m[name]), name);
  assert.ok(m.dsinfer_generation_tokens_per_second > 0);  // earlier tests ran within 10 s
  assert.ok(m.dsinfer_prompt_cache_hit_ratio > 0 && m.dsinfer_prompt_cache_hit_ratio < 1);
  assert.ok(m.dsinfer_kv_cache_cached_pages > 0);
  assert.ok(m.dsinfer_kv_cache_bytes_in_use <= m.dsinfer_kv_cache_budget_bytes);
  assert.equal(m.dsinfer_kv_cache_bytes_in_use % m.dsinfer_kv_cache_page_bytes, 0);
});
