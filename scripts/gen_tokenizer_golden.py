#!/usr/bin/env python3
"""Write tests/model/data/tokenizer_golden.json: Hugging Face `tokenizers`
reference output for loom's Llama-3 tokenizer test (tests/model/test_tokenizer.c).

For every corpus text: the ids of Tokenizer.encode(text, add_special_tokens=False)
(special-token text parsed), the decoded text (skip_special_tokens False and True),
and for some cases the ids with special-token parsing off (encode_special_tokens).
Also the Llama-3 chat template rendered with jinja2 from tokenizer_config.json
(as transformers' apply_chat_template does), and an encode-speed measurement.

Run by a developer after changing the corpus (needs `pip install tokenizers jinja2`):
    python3 scripts/gen_tokenizer_golden.py

It also writes the synthetic byte-level tokenizers of issue 16 (see
synthetic_goldens below: a small trained vocabulary that lacks some of the 256
byte tokens, as SmolLM2's does, under the llama-bpe, gpt2 and smollm
pre-tokenizers) and HF's ids for a corpus of code with CRLF, digit runs and
dropped bytes, into tests/model/data/tokenizer_real/ (the C test
tests/model/test_tokenizer_real.c reads them without Python). --only
synthetic writes just those.
With --loom-lib build/libloom.so it also times loom's encoder (through ctypes)
on the same texts in the same run, best of 3 for both, and checks its ids.
"""
import argparse
import ctypes
import json
import os
import random
import sys
import time

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOK_DIR = os.path.join(ROOT, "model", "data", "llama3-tokenizer")
OUT = os.path.join(ROOT, "tests", "model", "data", "tokenizer_golden.json")

# Texts whose special-token text is also encoded with parsing off.
SPECIAL_CASES = {"special_embedded", "special_adjacent", "special_lookalike", "chat_rendered"}

CORPUS = [
    ("empty", ""),
    ("space", " "),
    ("two_spaces", "  "),
    ("newline", "\n"),
    ("prose", "The quick brown fox jumps over the lazy dog. It wasn't me, she said; "
              "\"really?\" -- yes (mostly)!"),
    ("prose_para", "Tokenizers split text into pieces.\n\nEach piece is then merged by BPE, "
                   "rank by rank, until no merge applies. Simple... right?\n"),
    ("contractions", "I'm you're he's we've they'll I'd can't won't"),
    ("contractions_upper", "I'M YOU'RE HE'S WE'VE THEY'LL I'D CAN'T"),
    ("contractions_mixed", "you'RE i'M We'Ve it'S they'Ll o'clock rock'n'roll"),
    ("apostrophe_unicode", "it\u2019s don\u2019t l\u2019homme 'ſ 'K \u212a"),
    ("numbers", "1 12 123 1234 12345 123456 1234567 3.14159 1,000,000 -42 +7e10"),
    ("numbers_mixed", "abc123def 4567xyz 2024-01-15 v1.2.3 0x1F 99bottles"),
    ("digits_unicode", "\u0661\u0662\u0663\u0664 \u0967\u0968\u0969 \uff11\uff12\uff13\uff14 \u00b2\u00b3 \u2160\u2161"),
    ("code_python", "def f(x):\n\tif x > 0:\n\t\treturn x * 2\n    else:\n        return -x\n"),
    ("code_mixed_indent", "int main(void) {\n  \tint a = 1;\t// tab\n\t  \treturn a;\n}\n"),
    ("code_c", "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }\n#include <stdio.h>\n"),
    ("code_json", '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}'),
    ("whitespace_run", "a" + " " * 37 + "b"),
    ("whitespace_tail", "end with spaces     "),
    ("whitespace_only", " \t \t   \n   \n\n\t"),
    ("long_spaces", " " * 500),
    ("long_tabs", "\t" * 200 + "x"),
    ("newlines_crlf", "line one\r\nline two\r\n\r\nline four\rcarriage\n"),
    ("newlines_many", "a\n\n\n\n\nb\n \n \n c"),
    ("punct_runs", "!!!??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[ ]] {{ }} ~~~"),
    ("punct_newline", "end.\n\nNext!\r\n?"),
    ("chinese", "\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u6563\u6b65\u5427\u3002\u673a\u5668\u5b66\u4e60\u662f\u4eba\u5de5\u667a\u80fd\u7684\u4e00\u4e2a\u5206\u652f\u3002"),
    ("japanese", "\u3053\u3093\u306b\u3061\u306f\u3001\u4e16\u754c\uff01\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a\u3001\u6f22\u5b57\u3002\u6771\u4eac\u30bf\u30ef\u30fc\u306f333\u30e1\u30fc\u30c8\u30eb\u3067\u3059\u3002"),
    ("korean", "\uc548\ub155\ud558\uc138\uc694, \uc138\uacc4! \ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\ub97c \ud1a0\ud070\ud654\ud569\ub2c8\ub2e4."),
    ("arabic", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645! \u0647\u0630\u0627 \u0646\u0635 \u0639\u0631\u0628\u064a\u064c \u0645\u064f\u0634\u064e\u0643\u0651\u064e\u0644."),
    ("hindi", "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e! \u092f\u0939 \u0939\u093f\u0928\u094d\u0926\u0940 \u092a\u093e\u0920 \u0939\u0948\u0964"),
    ("russian", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0421\u044a\u0435\u0448\u044c \u0436\u0435 \u0435\u0449\u0451 \u044d\u0442\u0438\u0445 \u043c\u044f\u0433\u043a\u0438\u0445 \u0444\u0440\u0430\u043d\u0446\u0443\u0437\u0441\u043a\u0438\u0445 \u0431\u0443\u043b\u043e\u043a."),
    ("greek", "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u03ba\u03cc\u03c3\u03bc\u03b5! \u0391\u0392\u0393 \u03b1\u03b2\u03b3 \u03c3\u03c2 \u0390"),
    ("accented_latin", "Cr\u00e8me br\u00fbl\u00e9e, na\u00efve fa\u00e7ade, \u00dcbergr\u00f6\u00dfe, \u0141\u00f3d\u017a, S\u00e3o Paulo, \u00c5ngstr\u00f6m"),
    ("combining_marks", "e\u0301 a\u0300 o\u0308 n\u0303 Zalgo: Z\u0351\u036b\u0343a\u0352l\u0357g\u0300o\u0301 \u0301lead"),
    ("emoji", "I \u2764\ufe0f tokens \U0001f600\U0001f680\U0001f525 ok\U0001f44d\U0001f3fd"),
    ("emoji_zwj", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 \U0001f3f3\ufe0f\u200d\U0001f308 \U0001f9d1\U0001f3fe\u200d\U0001f4bb"),
    ("emoji_flags", "\U0001f1fa\U0001f1f8\U0001f1ef\U0001f1f5\U0001f1e9\U0001f1ea \U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"),
    ("unicode_spaces", "a\u00a0b\u2009c\u3000d\u202fe\u2028f\u2029g\u0085h\u1680i\u205fj\u200bk\ufeffl\u180em \u180e\t\t\u180e"),
    ("unicode_space_runs", "x\u3000\u3000\u3000y \u00a0 \u00a0z\u2003\u2003\n\u2003w"),
    ("control_chars", "a\x01b\x07c\x1bd\x7fe\x1cf\x1fg\x0bh\x0ci"),
    ("special_embedded", "Hello<|eot_id|>world<|begin_of_text|> x <|start_header_id|>user<|end_header_id|>\n\nhi"),
    ("special_adjacent", "<|begin_of_text|><|begin_of_text|><|eot_id|>"),
    ("special_lookalike", "<|eot_id <|eot_id|| <eot_id|> <|reserved_special_token_5|><|reserved_special_token_250|>"),
    ("chat_rendered", "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                      "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    ("long_word", "Pneumonoultramicroscopicsilicovolcanoconiosis" * 20),
    ("long_random_letters", None),  # filled below
    ("long_digits", "31415926535897932384626433832795028841971693993751058209749445923" * 8),
    ("url_email", "https://example.com/path?q=1&r=two#frag mail: first.last+tag@sub.example.org"),
    ("math_symbols", "\u2200x\u2208\u211d: x\u00b2 \u2265 0 \u21d2 \u221a(x\u00b2) = |x| \u00b1 \u03b5 \u222b\u2211\u220f"),
    ("mixed_scripts", "English \u4e2d\u6587 \u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0939\u093f\u0928\u094d\u0926\u0940 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4 \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac 123"),
    ("thai_hebrew", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a \u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd"),
    ("leading_space_words", " hello  world   again    and     more"),
    ("letters_after_punct", "(hello)[world]{again}<tag>'quote'\"dq\""),
    ("underscore_ident", "__init__ snake_case_name CamelCaseName mixedCase_123"),
]


def random_texts(rng, n):
    """Seeded mixtures of characters from many classes, to hit regex/BPE edges."""
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " \t\n\r",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "\u00e9\u00e8\u00fc\u00f1\u00df\u00c5\u0153\u00f8",
        "\u4e00\u4e8c\u4e09\u4eba\u5927\u5c0f\u5c71\u6c34",
        "\u0430\u0431\u0432\u0433\u0434\u0435\u0451\u0416",
        "\u0627\u0628\u062a\u062b\u0645\u0646",
        "\U0001f600\U0001f44d\u2764\ufe0f\u200d",
        "\u0301\u0308\u0327",
        "\u00a0\u2009\u3000\u2028",
    ]
    out = []
    for _ in range(n):
        k = rng.randint(1, 60)
        s = []
        for _ in range(k):
            pool = rng.choice(pools)
            s.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
        out.append("".join(s))
    return out


SPEED_TEXTS = [
    ("whole corpus", None),
    ("English prose + code", ["prose", "prose_para", "contractions", "code_python",
                              "code_mixed_indent", "code_c", "code_json", "url_email",
                              "leading_space_words", "underscore_ident"]),
]


def speed_text(texts):
    """The encode-speed benchmark text; test_tokenizer.c builds the same one."""
    base = "\n".join(texts)
    reps = (4 << 20) // max(1, len(base.encode("utf-8"))) + 1
    return base * reps


def chat_golden(tok_dir):
    cfg = json.load(open(os.path.join(tok_dir, "tokenizer_config.json"), encoding="utf-8"))
    template = cfg["chat_template"]
    convs = [
        [{"role": "user", "content": "Hello!"}],
        [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "What is 2+2?"},
         {"role": "assistant", "content": "4"},
         {"role": "user", "content": "And 3+3?"}],
        [{"role": "user", "content": "  \n\t padded content \u3000\u00a0\n"},
         {"role": "assistant", "content": "\n\nline1\n  line2  \n"}],
        [{"role": "tool", "content": "{\"result\": 42}"},
         {"role": "user", "content": "\u4f60\u597d \U0001f600"}],
        [{"role": "user", "content": ""}],
        [{"role": "user", "content": " \x1c\x1d\x1e\x1f\x85inner\u2029 "}],
        [],
    ]
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        jinja2 = None
    cases = []
    for msgs in convs:
        if jinja2 is not None:
            # As transformers' apply_chat_template renders it.
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            rendered = env.from_string(template).render(
                messages=msgs, add_generation_prompt=True, bos_token=cfg["bos_token"],
                eos_token=cfg["eos_token"])
            source = "jinja2 %s" % jinja2.__version__
        else:  # hand-written equivalent of the template
            rendered = "".join(
                ("<|begin_of_text|>" if i == 0 else "") + "<|start_header_id|>" + m["role"] +
                "<|end_header_id|>\n\n" + m["content"].strip() + "<|eot_id|>"
                for i, m in enumerate(msgs)) + "<|start_header_id|>assistant<|end_header_id|>\n\n"
            source = "hand-written (jinja2 not installed)"
        cases.append({"messages": msgs, "add_generation_prompt": True, "expected": rendered,
                      "source": source})
    return cases


class LoomEncoder:
    """loom_tokenizer_encode through ctypes, for the side-by-side timing."""

    def __init__(self, lib_path, json_path):
        self.lib = ctypes.CDLL(lib_path)
        self.libc = ctypes.CDLL(None)
        self.tok = ctypes.c_void_p()
        err = ctypes.create_string_buffer(512)
        st = self.lib.loom_tokenizer_load_hf_json(json_path.encode(), ctypes.byref(self.tok), err,
                                                  ctypes.c_size_t(512))
        if st != 0:
            raise RuntimeError(err.value.decode())

    def encode_bytes(self, b):
        ids = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_size_t()
        st = self.lib.loom_tokenizer_encode(self.tok, b, ctypes.c_size_t(len(b)), ctypes.c_uint(0),
                                            ctypes.byref(ids), ctypes.byref(n), None,
                                            ctypes.c_size_t(0))
        if st != 0:
            raise RuntimeError("loom_tokenizer_encode failed: %d" % st)
        out = ids[:n.value]
        self.libc.free(ids)
        return out


def best_of(n, fn):
    best = None
    for _ in range(n):
        t0 = time.perf_counter()
        r = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loom-lib", help="path to libloom.so: also time loom's encoder")
    ap.add_argument("--only", choices=["llama3", "synthetic"], help="write only one golden set")
    args = ap.parse_args()
    if args.only != "llama3":
        synthetic_goldens()
    if args.only == "synthetic":
        return 0
    tok = Tokenizer.from_file(os.path.join(TOK_DIR, "tokenizer.json"))
    loom = LoomEncoder(args.loom_lib, os.path.join(TOK_DIR, "tokenizer.json")) if args.loom_lib \
        else None
    rng = random.Random(1234)
    corpus = []
    for name, text in CORPUS:
        if text is None:
            text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3000))
        corpus.append((name, text))
    for i, t in enumerate(random_texts(rng, 90)):
        corpus.append(("random_%03d" % i, t))

    cases = []
    for name, text in corpus:
        assert "\0" not in text, "the C test reads texts as NUL-terminated strings"
        enc = tok.encode(text, add_special_tokens=False)
        ids = enc.ids
        c = {"name": name, "text": text, "ids": ids,
             "decoded": tok.decode(ids, skip_special_tokens=False),
             "decoded_skip": tok.decode(ids, skip_special_tokens=True)}
        if name in SPECIAL_CASES:
            tok.encode_special_tokens = True
            c["ids_no_special"] = tok.encode(text, add_special_tokens=False).ids
            tok.encode_special_tokens = False
        cases.append(c)

    # Encode speed on two texts: the whole corpus (multilingual, random mixes,
    # long words) and English prose + code. One string (one thread), then the
    # same text as 10 kB chunks through encode_batch (all cores).
    import tokenizers
    speed = []
    for label, names in SPEED_TEXTS:
        texts = [c["text"] for c in cases if names is None or c["name"] in names]
        big = speed_text(texts)
        big_b = big.encode("utf-8")
        nbytes = len(big_b)
        reps = 3 if loom else 1
        dt, big_ids = best_of(reps, lambda: tok.encode(big, add_special_tokens=False).ids)
        chunks = [big[i:i + 10000] for i in range(0, len(big), 10000)]
        dtb, _ = best_of(reps, lambda: tok.encode_batch(chunks, add_special_tokens=False))
        print("tokenizers %s, %s: %.2f MB, encode %.2f MB/s (one string, one thread); "
              "encode_batch of 10 kB chunks %.2f MB/s (%d cores)"
              % (tokenizers.__version__, label, nbytes / 1e6, nbytes / 1e6 / dt,
                 nbytes / 1e6 / dtb, os.cpu_count()))
        if loom:
            dtl, lids = best_of(reps, lambda: loom.encode_bytes(big_b))
            print("loom, %s: encode %.2f MB/s (one string, one thread) = %.1fx tokenizers; "
                  "ids %s" % (label, nbytes / 1e6 / dtl, dt / dtl,
                              "identical" if lids == big_ids else "DIFFER"))
        speed.append({"label": label, "names": names, "bytes": nbytes, "n_ids": len(big_ids),
                      "hf_mb_s": round(nbytes / 1e6 / dt, 2)})

    golden = {
        "generator": "scripts/gen_tokenizer_golden.py (tokenizers %s)" % tokenizers.__version__,
        "tokenizer": "model/data/llama3-tokenizer/tokenizer.json",
        "cases": cases,
        "speed": speed,
        "chat": chat_golden(TOK_DIR),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print("wrote %s: %d cases, %d chat cases, %d bytes"
          % (os.path.relpath(OUT, ROOT), len(cases), len(golden["chat"]), os.path.getsize(OUT)))


# ---- synthetic tokenizers of real-file shapes (issue 16) ----

REAL_DIR = os.path.join(ROOT, "tests", "model", "data", "tokenizer_real")

# Bytes without a token in the synthetic vocabulary. SmolLM2 lacks 21 of the
# 256; these are chosen so that dropping them leaves valid UTF-8 (HF's decode
# is lossy, loom's returns bytes): ASCII controls, a letter, and bytes that
# never occur in UTF-8.
MISSING_BYTES = [0x04, 0x07, 0x0B, 0x1B, 0x7F, ord("Q"), 0xC0, 0xC1] + list(range(0xF5, 0x100))

LLAMA3_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")

# GGUF tokenizer.ggml.pre name -> the tokenizer.json pre_tokenizer HF uses for
# such files (llama-bpe: Llama 3; gpt2: GPT-2's ByteLevel regex; smollm:
# SmolLM/SmolLM2, digits isolated one by one, then GPT-2's regex).
PRE_TOKENIZERS = {
    "llama-bpe": ({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": None}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": False}]}, True),
    "gpt2": ({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
              "use_regex": True}, False),
    "smollm": ({"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": True}]}, False),
}

TRAIN_TEXT = [
    "The quick brown fox jumps over the lazy dog. Quite quiet queens quickly quit.",
    "def main():\r\n    return 12345 + 678\r\n\r\nfor i in range(100):\r\n\tprint(i)\r\n",
    "int x = 2024; // the year\n  if (x > 99) { y = x * 3.14159; }\n",
    "I'm you're he's we've they'll I'd can't won't don't",
    "Tokenizers split text into pieces; each piece is merged rank by rank.",
    "caf\u00e9 na\u00efve \u00fcber \u4eca\u5929 \u043f\u0440\u0438\u0432\u0435\u0442 123 4567 89",
    "    indented code\n\t\ttabs\n  spaces  and   more   spaces\n\n\n",
]

REAL_CORPUS = [
    ("empty", ""),
    ("prose", "The quick brown fox jumps over the lazy dog. It wasn't me!"),
    ("missing_letter", "Quite Quiet QQQ aQb Queens quickly quit"),
    ("missing_controls", "a\x04b\x07c\x1bd\x7fe\x0bf \x04\x04 \x1b[0m"),
    ("only_missing", "QQQ"),
    ("crlf_code", "def main():\r\n    return 12345 + 678\r\n\r\nfor i in range(100):\r\n"
                  "\tprint(i)\r\n"),
    ("crlf_c", "int main(void) {\r\n  int x = 2024;\r\n  return x * 31415926;\r\n}\r\n"),
    ("digit_runs", "1 12 123 1234 12345 123456 1234567 3.14159 1,000,000 -42 v1.2.3 0x1F 99a"),
    ("digits_spaces", "a  1 b   22  c 333\t4\n5 \u0661\u0662\u0663 \uff11\uff12 \u00b2"),
    ("whitespace", "end with spaces     \n\n  \t x  \r\n\r\n   y"),
    ("contractions", "I'm you're he's we've they'll I'd can't WON'T It'S"),
    ("unicode", "caf\u00e9 na\u00efve \u00fcber \u4eca\u5929 \u043f\u0440\u0438\u0432\u0435\u0442 "
                "\U0001f600 \u00a0x"),
    ("punct", "!!!??? ... --- (hello)[world]{again} \"quoted\" #include <stdio.h>"),
    ("special", "<|im_start|>user\nHi Q<|im_end|>\n<|im_start|>assistant\n"),
]

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def byte_alphabet():
    """GPT-2 bytes_to_unicode: byte -> character."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def synthetic_vocab():
    """A trained byte-level BPE with MISSING_BYTES (and everything built from
    them) removed, ids renumbered densely, the specials appended."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(TRAIN_TEXT * 4, trainer)
    model = json.loads(tok.to_str())["model"]
    b2u = byte_alphabet()
    gone = {b2u[b] for b in MISSING_BYTES}
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    kept = [s for s, _ in vocab if not (set(s) & gone)]
    assert len(kept) <= len(vocab) - len(MISSING_BYTES)
    merges = []
    for m in model["merges"]:
        l, r = m if isinstance(m, list) else m.split(" ")
        if not (set(l + r) & gone):
            merges.append([l, r])
    return kept, merges


def synthetic_goldens():
    from tokenizers import Tokenizer
    import tokenizers
    tokens, merges = synthetic_vocab()
    os.makedirs(REAL_DIR, exist_ok=True)
    n = len(tokens)
    added = [{"id": n + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(SPECIALS)]
    for pre, (pre_json, ignore_merges) in PRE_TOKENIZERS.items():
        pre_json = json.loads(json.dumps(pre_json))
        if pre == "llama-bpe":
            pre_json["pretokenizers"][0]["pattern"]["Regex"] = LLAMA3_REGEX
        tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
              "normalizer": None, "pre_tokenizer": pre_json, "post_processor": None,
              "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                          "use_regex": True},
              "model": {"type": "BPE", "dropout": None, "unk_token": None,
                        "continuing_subword_prefix": None, "end_of_word_suffix": None,
                        "fuse_unk": False, "byte_fallback": False, "ignore_merges": ignore_merges,
                        "vocab": {s: i for i, s in enumerate(tokens)}, "merges": merges}}
        text = json.dumps(tj, ensure_ascii=False, indent=1)
        tok = Tokenizer.from_str(text)
        base = os.path.join(REAL_DIR, pre)
        with open(base + ".tokenizer.json", "w", encoding="utf-8") as f:
            f.write(text + "\n")
        # Line format for the C test (hex strings: no escaping questions):
        #   pre NAME / ignore_merges 0|1 / missing N hex.. / tokens N + N lines /
        #   merges N + N lines "hexL hexR" / case NAME hexTEXT ids.. / decoded hexTEXT
        lines = ["# %s: tokenizers %s, scripts/gen_tokenizer_golden.py" % (pre, tokenizers.__version__),
                 "pre %s" % pre, "ignore_merges %d" % ignore_merges,
                 "missing %d %s" % (len(MISSING_BYTES), " ".join("%02x" % b for b in MISSING_BYTES)),
                 "tokens %d" % (n + len(SPECIALS))]
        lines += [t.encode().hex() for t in tokens + SPECIALS]
        lines.append("merges %d" % len(merges))
        lines += ["%s %s" % (l.encode().hex(), r.encode().hex()) for l, r in merges]
        for name, text_ in REAL_CORPUS:
            assert "\0" not in text_
            ids = tok.encode(text_, add_special_tokens=False).ids
            lines.append("case %s %s %s" % (name, text_.encode().hex() or "-",
                                            " ".join(map(str, ids))))
            dec = tok.decode(ids, skip_special_tokens=False)
            assert "\ufffd" not in dec
            lines.append("decoded %s" % (dec.encode().hex() or "-"))
        with open(base + ".golden.txt", "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        print("wrote %s.{tokenizer.json,golden.txt}: %d tokens, %d merges, %d cases"
              % (os.path.relpath(base, ROOT), n + len(SPECIALS), len(merges), len(REAL_CORPUS)))


if __name__ == "__main__":
    sys.exit(main())
