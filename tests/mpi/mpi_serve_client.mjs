// The requests of tests/mpi/mpi_serve_test.py, sent with the official `openai` npm client
// (pinned in tools/npm) to the server at DSINFER_URL; prints one JSON object: each request's
// text, finish reason and prompt tokens served from the prefix cache. Run against one process
// and against an MPI job, the two objects must be equal.
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.DSINFER_SOURCE_DIR, 'tools/npm/package.json'));
const OpenAI = require('openai').default ?? require('openai');
const client = new OpenAI({ baseURL: `${process.env.DSINFER_URL}/v1`, apiKey: 'none',
                            maxRetries: 0, timeout: 120000 });
const MODEL = 'deepseek-v3.2';

const SENTENCE = 'Tell me everything you know about the history of the harbour, the ships that ' +
  'sailed from it, the merchants who traded there, the storms that closed it, and the people ' +
  'who rebuilt it after the great fire, in the order in which these things happened.';
const LONG = `${SENTENCE} Then, once more: ${SENTENCE}`;  // > 64 tokens: one full cache page

function chat(content, extra = {}) {
  return client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content }], max_tokens: 16, temperature: 0, ...extra,
  });
}

function summary(r) {
  return { text: r.choices[0].message.content, finish: r.choices[0].finish_reason,
           cached: r.usage.prompt_cache_hit_tokens };
}

async function streamed(content) {
  const stream = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content }], max_tokens: 16, temperature: 0,
    stream: true, stream_options: { include_usage: true },
  });
  let text = '', finish = null, cached = null;
  for await (const chunk of stream) {
    if (chunk.choices.length) {
      text += chunk.choices[0].delta.content ?? '';
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    if (chunk.usage) cached = chunk.usage.prompt_cache_hit_tokens;
  }
  return { text, finish, cached };
}

const out = {};
// Batched: four at once (the server runs --parallel 2: two wait in the queue), one streamed,
// one sampled with a seed, one thinking.
const [a, b, c, d] = await Promise.all([
  chat(LONG), streamed('Why is the sky blue?'),
  chat('Write a short poem about rain.', { temperature: 0.8, top_p: 0.9, seed: 5 }),
  client.chat.completions.create({ model: 'deepseek-v3.2', max_tokens: 16, temperature: 0,
    messages: [{ role: 'user', content: 'What is 7 times 8?' }], thinking: { type: 'enabled' } }),
]);
out.long = summary(a);
out.streamed = b;
out.sampled = summary(c);
out.thinking = summary(d);
out.thinking.reasoning = d.choices[0].message.reasoning_content ?? null;
// The long prompt again: its first 64-token page comes from the prefix cache.
out.long_again = summary(await chat(LONG + ' Be brief.'));
console.log(JSON.stringify(out));
