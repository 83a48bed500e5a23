// The web chat page (GET /) in a real headless browser: Debian's chromium driven by the pinned
// `playwright-core` (tools/npm). Started by run_openai_test.py with DSINFER_NEEDS_CHROMIUM=1
// against `dsinfer serve` on a random-weight model with an API key and the test script
// (SCRIPT_THINK → reasoning + answer, SCRIPT_TOOL → a get_weather tool call).
//
// The model's text is gibberish, so the page is checked against the API itself: each turn is
// first asked of POST /v1/chat/completions without streaming (greedy), then typed into the
// page; the page's streamed text, reasoning and usage must equal the API's (the tool call
// must equal the script's). The
// page's request comes second, so its prompt's whole 64-token pages come from the prefix
// cache: its cache-hit count must be 64·⌊(prompt − 1)/64⌋ (docs/server.md) and its cost
// must equal the price table (GET /v1/dsinfer/prices) applied to its token counts. Stop is
// checked on the server: /metrics counts the cancelled request, the sequence is freed and
// generation stops far short of max_tokens. Screenshots go to DSINFER_ARTIFACTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const SOURCE = process.env.DSINFER_SOURCE_DIR;
const require = createRequire(path.join(SOURCE, 'tools/npm/package.json'));
const { chromium } = require('playwright-core');

const URL_BASE = process.env.DSINFER_URL;
const KEY = process.env.DSINFER_API_KEY;
const ARTIFACTS = process.env.DSINFER_ARTIFACTS;
const MODEL = 'deepseek-v3.2';
const WEB_DIR = path.join(SOURCE, 'src/server/web');

let browser, page;
const problems = [];  // page errors, CSP violations, requests to other origins
let allow401 = true;  // before the key is entered, the page's probe of /v1/models gets 401

async function api(pathname, body) {
  const res = await fetch(`${URL_BASE}${pathname}`, {
    method: body ? 'POST' : 'GET',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}` },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json();
  assert.equal(res.status, 200, JSON.stringify(json));
  return json;
}

async function metrics() {
  const text = await (await fetch(`${URL_BASE}/metrics`)).text();
  const out = {};
  for (const m of text.matchAll(/^(\w+) (\S+)$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

async function shot(name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

const last = (sel) => page.locator(sel).last();

// Fills the page's settings and sends `text`; returns the assistant message's locator.
async function sendFromPage(text, { think = false, temperature = '0', maxTokens = '16' } = {}) {
  if (!(await page.locator('#settings').evaluate((d) => d.open))) {
    await page.locator('#settings summary').click();
  }
  await page.fill('#temperature', temperature);
  await page.fill('#max-tokens', String(maxTokens));
  await page.fill('#seed', '');
  await page.setChecked('#think', think);
  const count = await page.locator('.msg.assistant').count();
  await page.fill('#prompt', text);
  await page.press('#prompt', 'Enter');
  await page.locator('.msg.assistant').nth(count).waitFor();
  return page.locator('.msg.assistant').nth(count);
}

async function waitFinished(msg, state = 'done') {
  await page.waitForFunction((el) => el.dataset.state !== 'streaming', await msg.elementHandle(),
    { timeout: 30000 });
  assert.equal(await msg.getAttribute('data-state'), state,
    `message state; usage line: ${await msg.locator('.usage').textContent()}`);
}

// The page's usage line against the API's usage for the same request (made just before, so
// the page's prompt pages come from the prefix cache) and the server's price table.
async function checkUsage(msg, apiUsage, prices) {
  const u = msg.locator('.usage');
  const d = await u.evaluate((el) => ({ ...el.dataset, text: el.textContent }));
  const prompt = Number(d.promptTokens), hit = Number(d.cacheHitTokens);
  const completion = Number(d.completionTokens);
  assert.equal(prompt, apiUsage.prompt_tokens);
  assert.equal(completion, apiUsage.completion_tokens);
  assert.equal(Number(d.reasoningTokens), apiUsage.completion_tokens_details.reasoning_tokens);
  assert.equal(hit, 64 * Math.floor((prompt - 1) / 64), `cache hit of a repeated prompt of ${prompt}`);
  const cost = (hit * prices.input_cache_hit + (prompt - hit) * prices.input_cache_miss +
                completion * prices.output) / 1e6;
  assert.ok(Math.abs(Number(d.cost) - cost) <= 1e-12 * Math.max(1, cost), `${d.cost} vs ${cost}`);
  assert.ok(d.text.includes(`prompt ${prompt} tokens (cache hit ${hit})`), d.text);
  assert.ok(d.text.includes(`completion ${completion} tokens`), d.text);
  assert.match(d.text, /cost \$[0-9.e-]+/);
  if (completion > 1) {
    assert.ok(Number(d.tokensPerSecond) > 0, d.text);
    assert.match(d.text, /\d+\.\d tokens\/s/);
  }
  assert.ok(Number(d.firstTokenMs) >= 0, d.text);
  assert.match(d.text, /first token after \d+\.\d\d s/);
}

before(async () => {
  browser = await chromium.launch({ executablePath: process.env.DSINFER_CHROMIUM, headless: true });
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  page = await context.newPage();
  // Recorded by the browser itself (an init script is not subject to the page's CSP).
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation',
      (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (allow401 && m.text().includes('status of 401')) return;
    problems.push(`console error: ${m.text()}`);
  });
  page.on('request', (r) => {
    if (!r.url().startsWith(`${URL_BASE}/`)) problems.push(`request to another origin: ${r.url()}`);
  });
});

after(async () => {
  if (browser) await browser.close();
});

test('the page and its files: no key needed, CSP, types, cache validation, bytes of src/server/web', async () => {
  const types = { '/': 'text/html; charset=utf-8', '/chat.js': 'text/javascript; charset=utf-8',
    '/chat.css': 'text/css; charset=utf-8', '/favicon.svg': 'image/svg+xml' };
  for (const [p, type] of Object.entries(types)) {
    const res = await fetch(`${URL_BASE}${p}`);  // no Authorization
    assert.equal(res.status, 200, p);
    assert.equal(res.headers.get('content-type'), type, p);
    const csp = res.headers.get('content-security-policy');
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'[;]/);
    assert.match(csp, /connect-src 'self'[;]/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    const file = path.join(WEB_DIR, p === '/' ? 'index.html' : p.slice(1));
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(fs.readFileSync(file)), p);
    const etag = res.headers.get('etag');
    const again = await fetch(`${URL_BASE}${p}`, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304, p);
  }
  const api401 = await fetch(`${URL_BASE}/v1/dsinfer/prices`);
  assert.equal(api401.status, 401);  // the API calls still need the key
});

test('web chat in chromium: key, streaming, multi-turn, thinking, tool call, stop, phone', async () => {
  const prices = await api('/v1/dsinfer/prices');
  await page.goto(`${URL_BASE}/`);

  // The server wants a key: the page asks, refuses a wrong one, keeps the right one per tab.
  await page.locator('#key-panel').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#send').isDisabled(), true);
  await shot('01-key');
  await page.fill('#key-input', 'wrong-key');
  await page.click('#key-form button');
  await page.waitForFunction(() => document.getElementById('key-error').textContent.length > 0);
  await page.fill('#key-input', KEY);
  await page.click('#key-form button');
  await page.locator('#key-panel').waitFor({ state: 'hidden' });
  await page.waitForFunction(() => !document.getElementById('send').disabled);
  allow401 = false;
  assert.equal(await page.evaluate(() => sessionStorage.getItem('dsinfer.apiKey')), KEY);
  assert.equal(await page.textContent('#model'), MODEL);
  const priceText = await page.textContent('#prices');
  for (const v of [prices.input_cache_hit, prices.input_cache_miss, prices.output]) {
    assert.ok(priceText.includes(String(v)), priceText);
  }

  // Turn 1, greedy: a prompt over one 64-token page, so the page's request hits the cache.
  const first = 'Please read this and answer. ' + 'The quick brown fox jumps over the lazy dog. '.repeat(8);
  const turn1 = [{ role: 'user', content: first }];
  const ref1 = await api('/v1/chat/completions',
    { model: MODEL, messages: turn1, temperature: 0, max_tokens: 16 });
  assert.ok(ref1.usage.prompt_tokens > 64, `prompt of ${ref1.usage.prompt_tokens} tokens`);
  // Record the answer's text after each piece the page appends (one text node per streamed
  // delta), from the mutation records themselves: reading the element when the observer runs
  // would merge pieces that reached the page in one network read (a fast server), which says
  // nothing about streaming.
  await page.evaluate(() => {
    window.__seen = [];
    const sofar = new WeakMap();
    new MutationObserver((records) => {
      for (const r of records) {
        const el = r.target;
        if (r.type !== 'childList' || !el.classList || !el.classList.contains('text') ||
            !el.closest('.msg.assistant')) continue;
        for (const n of r.addedNodes) {
          if (n.nodeType !== Node.TEXT_NODE) continue;
          sofar.set(el, (sofar.get(el) ?? '') + n.data);
          window.__seen.push(sofar.get(el));
        }
      }
    }).observe(document.getElementById('messages'), { subtree: true, childList: true });
  });
  const a1 = await sendFromPage(first, { maxTokens: 16 });
  await waitFinished(a1);
  const text1 = await a1.locator('.text').textContent();
  assert.equal(text1, ref1.choices[0].message.content);
  assert.equal(await a1.getAttribute('data-finish'), ref1.choices[0].finish_reason);
  const seen = [...new Set(await page.evaluate(() => window.__seen))].filter((t) => t.length);
  assert.ok(seen.length >= 3, `the answer arrived in ${seen.length} piece(s): not streamed`);
  for (const t of seen) assert.ok(text1.startsWith(t), 'every streamed state is a prefix');
  await checkUsage(a1, ref1.usage, prices);
  await shot('02-turn1');

  // Turn 2: the page sends the whole conversation.
  const turn2 = [...turn1, { role: 'assistant', content: text1 },
    { role: 'user', content: 'And after that?' }];
  const ref2 = await api('/v1/chat/completions',
    { model: MODEL, messages: turn2, temperature: 0, max_tokens: 8 });
  const a2 = await sendFromPage('And after that?', { maxTokens: 8 });
  await waitFinished(a2);
  assert.equal(await a2.locator('.text').textContent(), ref2.choices[0].message.content);
  await checkUsage(a2, ref2.usage, prices);
  assert.equal(await page.locator('.msg').count(), 4);
  await shot('03-turn2');

  // Thinking: the reasoning is rendered collapsed, the answer below it.
  await page.click('#new-chat');
  assert.equal(await page.locator('.msg').count(), 0);
  const think = [{ role: 'user', content: 'SCRIPT_THINK what is 2+2?' }];
  const ref3 = await api('/v1/chat/completions',
    { model: MODEL, messages: think, thinking: { type: 'enabled' }, temperature: 0, max_tokens: 64 });
  const a3 = await sendFromPage('SCRIPT_THINK what is 2+2?', { think: true, maxTokens: 64 });
  await waitFinished(a3);
  const details = a3.locator('details.reasoning');
  assert.equal(await details.isVisible(), true);
  assert.equal(await details.evaluate((d) => d.open), false, 'reasoning starts collapsed');
  assert.equal(await a3.locator('.reasoning-text').isVisible(), false);
  assert.equal(await a3.locator('.reasoning-text').textContent(), ref3.choices[0].message.reasoning_content);
  assert.equal(await a3.locator('.text').textContent(), ref3.choices[0].message.content);
  const reasoningTokens = ref3.usage.completion_tokens_details.reasoning_tokens;
  assert.equal(await details.locator('summary').textContent(), `Reasoning (${reasoningTokens} tokens)`);
  await checkUsage(a3, ref3.usage, prices);
  await shot('04-thinking-collapsed');
  await details.locator('summary').click();
  assert.equal(await a3.locator('.reasoning-text').isVisible(), true);
  await shot('05-thinking-open');

  // A tool call the model emits is shown with its name and arguments: the scripted
  // get_weather(city="Paris") of run_openai_test.py (the API's parse of it is checked in
  // openai_client_test.mjs; not asked again here, its 63 tokens would only slow the test).
  await page.click('#new-chat');
  const a4 = await sendFromPage('SCRIPT_TOOL weather in Paris?', { maxTokens: 64 });
  await waitFinished(a4);
  assert.equal(await a4.getAttribute('data-finish'), 'tool_calls');
  const shown = a4.locator('.tool-call');
  assert.equal(await shown.count(), 1);
  assert.equal(await shown.locator('.tool-name').textContent(), 'get_weather');
  assert.deepEqual(JSON.parse(await shown.locator('.tool-args').textContent()), { city: 'Paris' });
  assert.equal(await a4.locator('.text').textContent(), '');
  assert.match(await a4.locator('.usage').textContent(), /completion \d+ tokens/);
  await shot('06-tool-call');

  // Stop mid-stream: the server cancels the generation and frees the sequence.
  await page.click('#new-chat');
  const m0 = await metrics();
  const maxTokens = 1000;
  const a5 = await sendFromPage('Tell me a very long story.', { maxTokens });
  await page.waitForFunction((el) => el.querySelector('.text').textContent.length >= 8,
    await a5.elementHandle(), { timeout: 30000 });
  assert.equal(await a5.getAttribute('data-state'), 'streaming');
  await page.click('#stop');
  await waitFinished(a5, 'stopped');
  assert.match(await a5.locator('.usage').textContent(), /Stopped/);
  assert.equal(await page.locator('#stop').isDisabled(), true);
  assert.equal(await page.locator('#send').isDisabled(), false);
  let m1;
  for (let i = 0; i < 100; ++i) {
    m1 = await metrics();
    if (m1.dsinfer_requests_cancelled_total === m0.dsinfer_requests_cancelled_total + 1 &&
        m1.dsinfer_running_sequences === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(m1.dsinfer_requests_cancelled_total, m0.dsinfer_requests_cancelled_total + 1);
  assert.equal(m1.dsinfer_running_sequences, 0);
  const generated = m1.dsinfer_engine_generated_tokens_total - m0.dsinfer_engine_generated_tokens_total;
  assert.ok(generated < maxTokens, `${generated} tokens generated after stop`);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await metrics()).dsinfer_engine_generated_tokens_total,
    m1.dsinfer_engine_generated_tokens_total, 'nothing generated after the cancel');
  await shot('07-stopped');

  // A phone-sized screen: no horizontal scrolling, the composer on screen.
  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));
  assert.equal(await page.locator('#prompt').isVisible(), true);
  const box = await page.locator('#send').boundingBox();
  assert.ok(box.y + box.height <= 844 && box.x + box.width <= 390, JSON.stringify(box));
  await shot('08-phone');

  assert.deepEqual(await page.evaluate(() => window.__csp), [], 'CSP violations');
  assert.deepEqual(problems, []);
});
