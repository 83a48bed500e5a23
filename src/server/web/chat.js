// dsinfer web chat: a plain client of the server's OpenAI endpoints (docs/server.md, "Web
// chat"). It streams POST /v1/chat/completions (SSE), shows the reasoning collapsed, tool
// calls, usage, cost and timings as the server reports them (the price table from
// GET /v1/dsinfer/prices). Stop aborts the fetch; the closed connection makes the server
// cancel the generation.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORAGE = 'dsinfer.apiKey';
  const state = {
    model: null,       // the served model id (thinking is a request flag, not a model)
    prices: null,      // the server's price table
    history: [],       // [{role, content, tool_calls?}]: the conversation sent with each turn
    controller: null,  // AbortController of the running request
    conversation: 0,   // bumped by "New chat": a turn of an earlier conversation is dropped
  };

  function authHeaders() {
    const key = sessionStorage.getItem(KEY_STORAGE);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  function setStatus(text) {
    $('status').textContent = text;
  }

  async function errorText(res) {
    try {
      const body = await res.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) {
      // not JSON: fall through
    }
    return `HTTP ${res.status}`;
  }

  function showKeyPanel(message) {
    $('key-panel').hidden = false;
    $('key-error').textContent = message;
    $('send').disabled = true;
    $('key-input').focus();
  }

  function formatUsd(x) {
    if (x === 0) return '$0';
    return '$' + (x < 0.01 ? x.toPrecision(3) : x.toFixed(4));
  }

  function showPrices() {
    const p = state.prices;
    $('prices').textContent =
      `Prices (${p.currency} per ${p.per_tokens.toLocaleString('en')} tokens): ` +
      `input cache hit ${p.input_cache_hit}, input cache miss ${p.input_cache_miss}, ` +
      `output ${p.output}.`;
  }

  // Finds the served model and the price table; asks for a key when the server wants one.
  async function connect() {
    setStatus('Connecting…');
    let res;
    try {
      res = await fetch('/v1/models', { headers: authHeaders() });
    } catch (e) {
      setStatus(`Cannot reach the server: ${e.message}`);
      return;
    }
    if (res.status === 401) {
      const had = sessionStorage.getItem(KEY_STORAGE) !== null;
      sessionStorage.removeItem(KEY_STORAGE);
      showKeyPanel(had ? 'The server did not accept this key.' : '');
      setStatus('This server requires an API key.');
      return;
    }
    if (!res.ok) {
      setStatus(`Cannot list the models: ${await errorText(res)}`);
      return;
    }
    const models = (await res.json()).data;
    const base = models.find((m) => !m.id.endsWith('-reasoner')) || models[0];
    state.model = base.id;
    $('model').textContent = state.model;
    $('key-panel').hidden = true;
    try {
      const prices = await fetch('/v1/dsinfer/prices', { headers: authHeaders() });
      if (prices.ok) {
        state.prices = await prices.json();
        showPrices();
      }
    } catch (e) {
      // the table is informative only: each answer's cost comes with its usage
    }
    $('send').disabled = false;
    setStatus('Ready.');
  }

  // ---- the conversation view ----------------------------------------------------------------

  function element(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function scrollToEnd() {
    const main = document.querySelector('main');
    main.scrollTop = main.scrollHeight;
  }

  function addUserMessage(text) {
    const li = element('li', 'msg user');
    li.append(element('div', 'role', 'You'), element('div', 'text', text));
    $('messages').append(li);
    scrollToEnd();
    return li;
  }

  // An assistant message being streamed: its parts, filled as deltas arrive.
  function addAssistantMessage() {
    const li = element('li', 'msg assistant');
    li.dataset.state = 'streaming';
    li.setAttribute('aria-busy', 'true');
    const reasoning = element('details', 'reasoning');
    reasoning.hidden = true;
    const summary = element('summary', '', 'Thinking…');
    const reasoningText = element('div', 'reasoning-text');
    reasoning.append(summary, reasoningText);
    const text = element('div', 'text');
    const tools = element('div', 'tool-calls');
    const usage = element('p', 'usage');
    li.append(element('div', 'role', 'Assistant'), reasoning, text, tools, usage);
    $('messages').append(li);
    scrollToEnd();
    return { li, reasoning, summary, reasoningText, text, tools, usage };
  }

  function renderToolCalls(view, calls) {
    view.tools.replaceChildren();
    for (const call of calls) {
      if (!call) continue;
      const box = element('div', 'tool-call');
      box.dataset.name = call.function.name;
      let args = call.function.arguments;
      try {
        args = JSON.stringify(JSON.parse(args), null, 2);
      } catch (e) {
        // incomplete or not JSON: shown as sent
      }
      box.append(element('span', 'role', 'Tool call '), element('strong', 'tool-name',
        call.function.name), element('code', 'tool-args', '\n' + args));
      view.tools.append(box);
    }
  }

  // Usage and timings as the server reported them.
  function renderUsage(view, answer) {
    const u = answer.usage;
    const hit = u.prompt_cache_hit_tokens ?? 0;
    const reasoning = u.completion_tokens_details?.reasoning_tokens ?? 0;
    const d = view.usage.dataset;
    d.promptTokens = u.prompt_tokens;
    d.cacheHitTokens = hit;
    d.completionTokens = u.completion_tokens;
    d.reasoningTokens = reasoning;
    const parts = [`prompt ${u.prompt_tokens} tokens (cache hit ${hit})`,
      `completion ${u.completion_tokens} tokens` + (reasoning ? ` (reasoning ${reasoning})` : '')];
    const t = answer.timings;
    if (t && typeof t.decode_tokens_per_second === 'number') {
      d.tokensPerSecond = t.decode_tokens_per_second;
      parts.push(`${t.decode_tokens_per_second.toFixed(1)} tokens/s`);
    }
    if (t && typeof t.first_token_ms === 'number') {
      d.firstTokenMs = t.first_token_ms;
      parts.push(`first token after ${(t.first_token_ms / 1000).toFixed(2)} s`);
    }
    if (u.cost) {
      d.cost = u.cost.total;
      parts.push(`cost ${formatUsd(u.cost.total)}`);
      view.usage.title = `input cache hit ${formatUsd(u.cost.input_cache_hit)} + input cache ` +
        `miss ${formatUsd(u.cost.input_cache_miss)} + output ${formatUsd(u.cost.output)}`;
    }
    view.usage.textContent = parts.join(' · ');
    if (reasoning) view.summary.textContent = `Reasoning (${reasoning} tokens)`;
  }

  // ---- one turn -----------------------------------------------------------------------------

  function numberSetting(id, parse) {
    const raw = $(id).value.trim();
    if (raw === '') return undefined;
    const v = parse(raw);
    return Number.isFinite(v) ? v : undefined;
  }

  function requestBody(messages) {
    const body = {
      model: state.model,
      messages,
      stream: true,
      stream_options: { include_usage: true },
    };
    if ($('think').checked) body.thinking = { type: 'enabled' };
    const temperature = numberSetting('temperature', parseFloat);
    const maxTokens = numberSetting('max-tokens', (s) => parseInt(s, 10));
    const seed = numberSetting('seed', (s) => parseInt(s, 10));
    if (temperature !== undefined) body.temperature = temperature;
    if (maxTokens !== undefined) body.max_tokens = maxTokens;
    if (seed !== undefined) body.seed = seed;
    return body;
  }

  // Reads an SSE body, calling onChunk with each parsed `data:` JSON; true when [DONE] came.
  async function readEvents(stream, onChunk) {
    const reader = stream.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split('\n')) {
          if (!line.startsWith('data:')) continue;  // ": keep-alive" comments
          const data = line.slice(5).trim();
          if (data === '[DONE]') return true;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          onChunk(chunk);
        }
      }
    }
  }

  function applyChunk(chunk, answer, view) {
    if (chunk.usage) answer.usage = chunk.usage;
    if (chunk.timings) answer.timings = chunk.timings;
    for (const choice of chunk.choices || []) {
      const delta = choice.delta || {};
      if (delta.reasoning_content) {
        answer.reasoning += delta.reasoning_content;
        view.reasoningText.append(delta.reasoning_content);
        view.reasoning.hidden = false;
      }
      if (delta.content) {
        answer.content += delta.content;
        view.text.append(delta.content);
      }
      for (const tc of delta.tool_calls || []) {
        const call = (answer.toolCalls[tc.index] ??=
          { id: '', type: 'function', function: { name: '', arguments: '' } });
        if (tc.id) call.id = tc.id;
        if (tc.function && tc.function.name) call.function.name += tc.function.name;
        if (tc.function && tc.function.arguments) call.function.arguments += tc.function.arguments;
        renderToolCalls(view, answer.toolCalls);
      }
      if (choice.finish_reason) answer.finish = choice.finish_reason;
    }
    scrollToEnd();
  }

  // The assistant turn as it goes back to the server in later requests (reasoning is not sent
  // back, as in DeepSeek's API).
  function historyMessage(answer) {
    const m = { role: 'assistant', content: answer.content };
    const calls = answer.toolCalls.filter(Boolean);
    if (calls.length) m.tool_calls = calls;
    return m;
  }

  function setBusy(busy) {
    $('send').disabled = busy || state.model === null;
    $('stop').disabled = !busy;
  }

  async function send(text) {
    const user = { role: 'user', content: text };
    const userView = addUserMessage(text);
    const view = addAssistantMessage();
    const messages = [];
    const system = $('system').value.trim();
    if (system) messages.push({ role: 'system', content: system });
    messages.push(...state.history, user);
    const answer = { content: '', reasoning: '', toolCalls: [], finish: null, usage: null,
      timings: null };
    const controller = new AbortController();
    const conversation = state.conversation;
    state.controller = controller;
    setBusy(true);
    setStatus('Generating…');
    let outcome = 'done';
    try {
      const res = await fetch('/v1/chat/completions', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...authHeaders() },
        body: JSON.stringify(requestBody(messages)),
        signal: controller.signal,
      });
      if (!res.ok) {
        const message = await errorText(res);
        if (res.status === 401) showKeyPanel(message);
        throw new Error(message);
      }
      const complete = await readEvents(res.body, (chunk) => applyChunk(chunk, answer, view));
      if (!complete) throw new Error('the stream ended before [DONE]');
      if (answer.usage) renderUsage(view, answer);
      view.li.dataset.finish = answer.finish || '';
      if (answer.finish === 'length') view.usage.append(' · cut at max tokens');
    } catch (e) {
      outcome = controller.signal.aborted ? 'stopped' : 'error';
      view.usage.textContent = outcome === 'stopped'
        ? 'Stopped: the server cancelled the generation.'
        : `Error: ${e.message}`;
      if (outcome === 'error') view.usage.setAttribute('role', 'alert');
    }
    if (outcome === 'error') {
      userView.dataset.state = 'error';  // not part of the conversation
    } else if (conversation === state.conversation) {
      state.history.push(user, historyMessage(answer));  // a stopped answer stays as shown
    }
    view.li.dataset.state = outcome;
    view.li.removeAttribute('aria-busy');
    if (!view.reasoning.hidden && !answer.usage) view.summary.textContent = 'Reasoning';
    state.controller = null;
    setBusy(false);
    const ended = { done: 'Done.', stopped: 'Stopped.', error: 'Failed.' }[outcome];
    setStatus(conversation === state.conversation ? ended : 'Ready.');
  }

  // ---- wiring -------------------------------------------------------------------------------

  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('prompt').value;
    if (!text.trim() || state.controller || state.model === null) return;
    $('prompt').value = '';
    send(text);
  });
  $('prompt').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer').requestSubmit();
    }
  });
  $('stop').addEventListener('click', () => {
    if (state.controller) state.controller.abort();
  });
  $('new-chat').addEventListener('click', () => {
    if (state.controller) state.controller.abort();
    state.conversation += 1;
    state.history = [];
    $('messages').replaceChildren();
    setStatus(state.model ? 'Ready.' : $('status').textContent);
    $('prompt').focus();
  });
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, $('key-input').value.trim());
    $('key-input').value = '';
    connect();
  });

  connect();
})();
