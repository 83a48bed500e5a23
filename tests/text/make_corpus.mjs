// Writes tests/text/golden/corpus.jsonl: the tokenizer test corpus, one JSON string per line
// (JSON so that a text may hold any character, including '\n', U+2028 and lone CRs).
// Deterministic (seeded PRNG): regenerate with
//     node tests/text/make_corpus.mjs > tests/text/golden/corpus.jsonl
// then rerun tests/text/make_golden.mjs.

let seed = 0x5eed1234;
function rand() {  // mulberry32
  seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));

const english = [
  "The quick brown fox jumps over the lazy dog.",
  "It was the best of times, it was the worst of times.",
  "Don't panic: we'll fix it, they've said, and I'm sure you'd agree.",
  "DeepSeek-V3.2 introduces DeepSeek Sparse Attention (DSA), a fine-grained sparse attention mechanism.",
  "Mr. O'Neil paid $1,234.56 on 2024-03-15 at 10:45 p.m. (GMT+8).",
  "HELLO WORLD!!! Is this... really   the end???",
  "e-mail: john.doe+test@example.com, URL: https://example.org/path?q=1&r=two#frag",
  "Rock 'n' roll isn't dead; it's 'resting'.",
  "We hold these truths to be self-evident, that all men are created equal.",
  "Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
  "The model has 671B total parameters, of which 37B are activated for each token.",
  "Thank you. Hello! I am DeepSeek.",
  "camelCaseIdentifier snake_case_identifier SCREAMING_CASE kebab-case-word",
  "He said, \"Stop!\" — and then… silence.",
  "naïve café résumé coöperate façade jalapeño Ångström",
  "A\tB\tC\nD\tE\tF",
  "1+1=? 2*3=6 10/2=5 2^10=1024 √2≈1.41421356",
];
const chinese = [
  "深度求索发布了新一代大语言模型。", "我爱北京天安门，天安门上太阳升。", "人工智能正在改变世界的方方面面。",
  "请问今天的天气怎么样？明天会下雨吗？", "这是一个测试句子，包含标点符号：“引号”、《书名号》和（括号）。",
  "龘靐齉爩", "二〇二四年三月十五日", "中华人民共和国成立于1949年10月1日。", "鿐鿑鿒鿓鿔鿕", "𠀀𠀁𪜀𫝀𬺰𰀀",
];
const japanese = [
  "今日はいい天気ですね。", "カタカナとひらがなを混ぜて書きます。", "東京スカイツリーは634メートルです。",
  "ｶﾀｶﾅ（半角）とカタカナ（全角）", "吾輩は猫である。名前はまだ無い。", "ゔ ゕ ゖ ゟ ヿ ㇰㇱㇲ",
];
const korean = [
  "안녕하세요, 만나서 반갑습니다.", "한국어 형태소 분석은 어렵습니다.", "대한민국의 수도는 서울입니다.",
  "\u1100\u1161\u11A8 decomposed jamo", "ㄱㄴㄷㄹㅁㅂㅅ",
];
const other = [
  "Привет, мир! Как дела?", "Γειά σου Κόσμε· αβγδε ΑΒΓΔΕ", "مرحبا بالعالم، كيف حالك؟", "שלום עולם! מה שלומך?",
  "नमस्ते दुनिया, आप कैसे हैं?", "สวัสดีชาวโลก", "Xin chào thế giới, tiếng Việt có dấu.", "ሰላም ልዑል",
  "გამარჯობა მსოფლიო", "Բարեւ աշխարհ", "Zażółć gęślą jaźń", "Ärger über Öl und Übermaß: straße",
  "\u202Eright-to-left override\u202C and \u200Fmarks\u200E", "العربية ١٢٣٤٥٦ والأرقام 123",
  "Z̴̡̧̛͙͓̗͍a̷̢̛̮̞l̸̨̛͉g̵̢̛o̶͍̊", "e\u0301 a\u0300 o\u0308 n\u0303 \u0915\u094D\u0937", "ﬁ ﬂ ﬀ ㎏ ℃ Ⅻ ①②③",
];
const code = [
  "#include <vector>\nint main() {\n  std::vector<int> v{1, 2, 3};\n  for (auto& x : v) x *= 2;\n  return 0;\n}\n",
  "template <typename T>\nT Max(T a, T b) { return a > b ? a : b; }  // why: branchless on -O2",
  "def fib(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
  "if __name__ == '__main__':\n\tprint(f\"{x!r:>10}\", end='')\n",
  "{\"model\": \"deepseek-v3.2\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": 0.7, \"max_tokens\": 1024}",
  "{\n  \"a\": [1, 2.5e-3, -7, null, true],\n  \"b\": {\"c\": \"\\u00e9\\n\"}\n}",
  "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do wc -l \"$f\" | awk '{print $1}'; done 2>&1 | tee log\n",
  "cmake --preset release && cmake --build --preset release -j2 && ctest -R text",
  "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
  "x = [i**2 for i in range(10) if i % 2 == 0]  # squares",
  "const f = async (a, b) => { await g(a ?? b); return a?.c ?? `t${b}`; };",
  "<div class=\"x\">&lt;tag&gt; &amp; &#x1F600;</div>",
  "fn main() { let v: Vec<u8> = b\"\\xff\\x00\".to_vec(); println!(\"{:?}\", v); }",
  "    indented four\n\t\ttwo tabs\n        eight spaces\n",
  "a==b!=c<=d>=e&&f||g->h::i<<j>>k",
];
const emoji = [
  "😀😃😄😁", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 🏳️‍⚧️ 🏴‍☠️", "👩🏽‍💻👨🏿‍🚀🧑🏻‍🔬", "👍🏻👍🏼👍🏽👍🏾👍🏿",
  "🇨🇳🇺🇸🇯🇵🇰🇷🇫🇷", "1️⃣ 2️⃣ #️⃣ *️⃣", "❤️‍🔥 ❤️‍🩹", "🫠🫡🫶🪿🫎", "I ❤ Unicode ☃ ★ ♠ ♥ ♦ ♣", "🤖: Hello 👋!",
];
const special = [
  "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>",
  "<｜DSML｜function_calls>", "</｜DSML｜function_calls>", "<｜DSML｜invoke name=\"get_weather\">",
  "<｜search▁begin｜>", "<｜search▁end｜>", "<｜fim▁hole｜>", "<｜tool▁calls▁begin｜>", "<｜place▁holder▁no▁7｜>",
  "<|EOT|>", "<thin", "<think >", "<<think>>", "</think", "<｜User", "｜User｜>", "<think></think>",
  "<｜▁pad▁｜>", "<function_results>", "<result>42</result>",
];
// Characters new in Unicode 15/16 (in Oniguruma's classes, not in PCRE2 10.42's) and edge cases.
const newer = [
  "\u{31350}\u{31351}\u{323AF}", "\u{1E4D0}\u{1E4D1}\u{1E4F0}\u{1E4F1}", "\u{11F04}\u{11F05}\u{11F50}",
  "\u{1CC00}\u{1CC01}\u{1FBCB}", "\u{10D40}\u{10D41}\u{10D4A}", "\u{1171E}\u{11720}", "\u{2EBF0}x\u{2EE5D}",
  "\u{16D40}\u{16D70}", "\u0897\u0CF3", "ab\u{1E5D0}cd", "\u{E0001}\u{E0020}\u{E007F}", "\u{F0000}\u{10FFFD}",
];
const spaces = [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\u0085", "\u00A0", "\u3000", "\u180E", "\u200B",
  "\u2028", "\u2029", "\u202F", "\uFEFF", "\u000B", "\u000C", "\u2003", "\u1680", "\n\n", " \n ", "\t \t"];
const digits = () => {
  const kinds = [
    () => String(int(0, 9)),
    () => Array.from({length: int(2, 40)}, () => int(0, 9)).join(""),
    () => `${int(0, 99999)}.${int(0, 999999)}`,
    () => `${int(1, 999)},${String(int(0, 999)).padStart(3, "0")},${String(int(0, 999)).padStart(3, "0")}`,
    () => `+86 ${int(100, 199)}-${int(1000, 9999)}-${int(1000, 9999)}`,
    () => "١٢٣٤".slice(0, int(1, 4)) + "１２３" + "²³¹" + "⁴⁵",
    () => `v${int(0, 9)}.${int(0, 20)}.${int(0, 99)}-rc${int(1, 3)}`,
    () => `0x${int(0, 0xffffff).toString(16)}`,
    () => `${int(1, 9)}e-${int(1, 30)}`,
  ];
  return pick(kinds)();
};
const randomChars = () => {  // random scalar values, biased to interesting planes
  let s = "";
  const n = int(1, 24);
  for (let i = 0; i < n; i++) {
    const plane = pick([0x0000, 0x0000, 0x0000, 0x10000, 0x20000, 0x30000, 0xE0000]);
    let c = plane + int(0, 0xFFFF);
    if (c >= 0xD800 && c <= 0xDFFF) c = 0x41;
    if (c > 0x10FFFF) c = 0x10FFFF;
    s += String.fromCodePoint(c);
  }
  return s;
};
const categories = [english, chinese, japanese, korean, other, code, emoji, special, newer];
const fragment = () => {
  const r = rand();
  if (r < 0.08) return digits();
  if (r < 0.14) return pick(spaces).repeat(int(1, 6));
  if (r < 0.18) return randomChars();
  return pick(pick(categories));
};

const lines = [];
// Every fragment alone, then with surrounding spaces.
for (const cat of categories) for (const f of cat) lines.push(f, " " + f, f + "\n", "  " + f + "  ");
for (const s of spaces) lines.push(s, "a" + s + "b", s.repeat(3) + "x", "x" + s.repeat(5), "1" + s + "2");
// Edge cases.
lines.push("", " ", "\n", "a", "a".repeat(5000), " ".repeat(3000), "\n".repeat(100), "7".repeat(1000),
  "ab ".repeat(700), "中".repeat(2000), "😀".repeat(300), "<think>".repeat(50), "\t".repeat(200) + "end",
  " \u00A0\u3000\u180E\u200B\u0085 ".repeat(40), "1234567890".repeat(30), "!!!???...,,,;;;".repeat(20));
for (let i = 0; i < 400; i++) lines.push(digits());
for (let i = 0; i < 600; i++) lines.push(randomChars());
// Bulk: random mixtures of fragments with random separators.
while (lines.length < 6000) {
  const n = int(1, 8);
  let s = "";
  for (let k = 0; k < n; k++) s += (k && rand() < 0.7 ? pick(spaces) : "") + fragment();
  lines.push(s);
}
process.stdout.write(lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
