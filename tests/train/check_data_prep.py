#!/usr/bin/env python3
"""`loom data prep` end to end on the committed fixtures, against an
independent Python computation (ctest data_prep_check).

  check_data_prep.py LOOM SOURCE_DIR WORKDIR

JSONL (tests/train/data/prep/docs.jsonl): Python recomputes which records
survive and what they become, from the rules in train/data_prep.h written
again with the standard library: json, unicodedata.normalize("NFKC"), the
whitespace rule, regular expressions for e-mail addresses and URLs, exact
duplicates by a dict, near duplicates by the EXACT Jaccard of word 5-gram
shingles (loom estimates it with MinHash; the fixtures keep every pair far
from the threshold, so both must decide alike). The output file must equal
the expected records, and the JSON report must name the stage, reason and
duplicated record of every removal.

LSH: datasketch's _optimal_param (bands/rows minimising the false positive
+ false negative areas), recomputed with numpy, must match the bands and
rows in loom's report for several thresholds.

HTML (tests/train/data/prep/html): the boilerplate markers must be gone, the
main text there, the mirror page an exact duplicate, the edited page a near
duplicate, the link-list page empty; with --qa-heading 3 the questions are
the records.
"""
import json
import os
import re
import struct
import subprocess
import sys
import unicodedata

import numpy as np

FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what)


# ---- the rules, written again ----

ZW = "\u200b\u200c\u200d\u2060\ufeff"


def ws_rule(s):
    s = s.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    s = "".join(c for c in s if c in "\t\n" or (unicodedata.category(c) != "Cc" and c not in ZW))
    out, empty = [], 0
    for line in s.split("\n"):
        line = line.rstrip(" \t")
        if not line:
            empty += 1
            continue
        if out and empty:
            out.append("")
        if not out:
            line = line.lstrip(" \t")
        out.append(line)
        empty = 0
    return "\n".join(out)


EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9_%+-][A-Za-z0-9._%+-]*@"
                   r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9-])")
URL = re.compile(r"(?<![A-Za-z0-9.@])(?:https?://|ftp://|www\.)[^\s<>\"'`{}|\\^]+", re.I)


def url_spans(s):
    spans = []
    for m in URL.finditer(s):
        e = m.end()
        while e > m.start() and s[e - 1] in ".,;:!?":
            e -= 1
        spans.append((m.start(), e))
    return spans


def words(s):
    return re.findall(r"[A-Za-z0-9\u0080-\U0010ffff]+", s.translate(
        {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}))


def shingles(s, n=5):
    w = words(s)
    if not w:
        return set()
    k = min(n, len(w))
    return {" ".join(w[i:i + k]) for i in range(len(w) - k + 1)}


def jaccard(a, b):
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def expected_jsonl(path, threshold=0.8):
    kept, removed, seen, kept_sh = [], {}, {}, []
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    for no, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        src = "%s:%d" % (path, no)
        try:
            txt = raw.decode("utf-8")
        except UnicodeDecodeError:
            removed[src] = ("normalize", "invalid UTF-8", None)
            continue
        try:
            obj = json.loads(txt)
        except ValueError:
            removed[src] = ("parse", "invalid JSON", None)
            continue
        if not isinstance(obj, dict):
            removed[src] = ("parse", "not a JSON object", None)
            continue
        if "text" in obj:
            if not isinstance(obj["text"], str):
                removed[src] = ("parse", "text field is not a string", None)
                continue
            holders, key = [obj], "text"
        elif "messages" in obj:
            m = obj["messages"]
            if not isinstance(m, list) or not m:
                removed[src] = ("parse", "messages is not a non-empty array", None)
                continue
            if not all(isinstance(x, dict) and isinstance(x.get("role"), str) and
                       isinstance(x.get("content"), str) for x in m):
                removed[src] = ("parse", "a message is not {role, content} strings", None)
                continue
            holders, key = m, "content"
        else:
            removed[src] = ("parse", "no text or messages field", None)
            continue
        total = url = 0
        for h in holders:
            s = ws_rule(unicodedata.normalize("NFKC", h[key]))
            total += len(s.encode())
            url += sum(e - b for b, e in url_spans(s))
            h[key] = EMAIL.sub("<EMAIL>", s)
        if total and url > 0.5 * total:
            removed[src] = ("filter", "mostly URLs", None)
            continue
        content = [h[key] for h in holders]
        if sum(len(c) for c in content) == 0:
            removed[src] = ("filter", "empty", None)
            continue
        ckey = tuple((h.get("role"), h[key]) for h in holders)
        if ckey in seen:
            removed[src] = ("exact", "exact duplicate", seen[ckey])
            continue
        sh = shingles("\n".join(content))
        near = [(jaccard(sh, s2), k) for s2, k in kept_sh]
        near = [x for x in near if x[0] >= threshold]
        if near:
            removed[src] = ("near", "near duplicate", max(near)[1])
            continue
        seen[ckey] = src
        kept_sh.append((sh, src))
        kept.append(obj)
    return kept, removed


def byte_decoder():
    """GPT-2's bytes_to_unicode, inverted."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def check_pack(path, tokjson, texts, seq_len):
    """The LOOMPAK1 layout of train/data_prep_pack.h: every document, decoded
    with the tokenizer's own vocabulary, is the kept text; segments are
    1, 2, ... per sequence, a split document continues as segment 1; padding
    (segment 0) only at the very end."""
    tj = json.load(open(tokjson, encoding="utf-8"))
    id2s = {v: k for k, v in tj["model"]["vocab"].items()}
    special = {t["id"]: t["content"] for t in tj["added_tokens"]}
    dec = byte_decoder()
    data = open(path, "rb").read()
    magic, ver, sl, nseq, ndoc, ntok, vocab, pad, bos_added, _ = struct.unpack_from(
        "<8sIIQQQIiII", data)
    check(magic == b"LOOMPAK1" and ver == 1 and sl == seq_len and ndoc == len(texts),
          "pack header %r" % ((magic, ver, sl, nseq, ndoc),))
    check(len(data) == 56 + nseq * sl * 6, "pack file size")
    toks = np.frombuffer(data, "<i4", nseq * sl, 56).reshape(nseq, sl)
    segs = np.frombuffer(data, "<u2", nseq * sl, 56 + nseq * sl * 4).reshape(nseq, sl)
    docs, cur, bad = [], [], 0
    for q in range(nseq):
        last_seg, padding = 0, False
        for i in range(sl):
            t, sg = int(toks[q, i]), int(segs[q, i])
            if sg == 0:  # padding: EOS ids, only at the end of the last sequence
                bad += not (q == nseq - 1 and t == pad)
                padding = True
                continue
            bad += padding  # text after padding
            # Segments start at 1 in every sequence and step by one, and only
            # right after an EOS (a document boundary).
            if sg != last_seg:
                bad += sg != last_seg + 1 or (last_seg > 0 and int(toks[q, i - 1]) != pad)
            last_seg = sg
            cur.append(t)
            if t == pad:
                docs.append(cur)
                cur = []
    check(bad == 0, "%d segment/padding rule violations in the pack" % bad)
    check(not cur and len(docs) == len(texts), "%d documents in the pack, %d texts" %
          (len(docs), len(texts)))
    check(sum(len(d) for d in docs) == ntok, "token count in the header")
    for d, text in zip(docs, texts):
        body = d[1:-1] if bos_added else d[:-1]
        check(not bos_added or special.get(d[0]) == "<|begin_of_text|>", "BOS first")
        raw = b"".join(bytes(dec[c] for c in id2s[t]) for t in body)
        check(raw.decode("utf-8") == text, "packed document decodes to its text")


def run(loom, *args):
    p = subprocess.run([loom, "data", "prep", *args], capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stdout, p.stderr)
    check(p.returncode == 0, "loom data prep %s: exit %d" % (" ".join(args), p.returncode))
    return p


def lsh_optimum(threshold, num_perm):
    # Gauss-Legendre on each side of the threshold (datasketch uses
    # scipy.integrate.quad): 64 nodes integrate these smooth curves to ~1e-12.
    x, w = np.polynomial.legendre.leggauss(64)
    s_lo, w_lo = (x + 1) * threshold / 2, w * threshold / 2
    s_hi, w_hi = threshold + (x + 1) * (1 - threshold) / 2, w * (1 - threshold) / 2
    best = (np.inf, 0, 0)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.sum(w_lo * (1.0 - (1.0 - s_lo ** r) ** b))
            fn = np.sum(w_hi * (1.0 - s_hi ** r) ** b)
            err = 0.5 * fp + 0.5 * fn
            if err < best[0]:
                best = (err, b, r)
    return best[1], best[2]


def main():
    loom, src_dir, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    fx = os.path.join(src_dir, "tests", "train", "data", "prep")
    docs = os.path.join(fx, "docs.jsonl")

    # ---- JSONL ----
    out, rep = os.path.join(work, "docs.out.jsonl"), os.path.join(work, "docs.report.json")
    p = run(loom, "--in", docs, "-o", out, "--report", rep)
    kept, removed = expected_jsonl(docs)
    got = [json.loads(l) for l in open(out, encoding="utf-8")]
    check(len(got) == len(kept), "kept %d records, expected %d" % (len(got), len(kept)))
    for i, (g, e) in enumerate(zip(got, kept)):
        check(g == e, "record %d differs:\n  loom:     %r\n  expected: %r" % (i, g, e))
    report = json.load(open(rep))
    got_removed = {r["source"]: (r["stage"], r["reason"], r.get("duplicate_of_source"))
                   for r in report["removed"]}
    check(got_removed == removed, "removals differ:\n  loom:     %s\n  expected: %s" %
          (sorted(got_removed.items()), sorted(removed.items())))
    stages = {s["stage"]: s for s in report["stages"]}
    check(stages["parse"]["in"] == 20 and report["records_out"] == len(kept),
          "report totals: %s" % {k: (v["in"], v["out"]) for k, v in stages.items()})
    # Addresses redacted in the records that passed the filter: records 7, 8
    # (later an exact duplicate of 7) and 9.
    check(stages["filter"]["emails_redacted"] == 3, "e-mails redacted")
    for line in ("parse", "near", "exact duplicate: 3", "near duplicate: 2", "invalid JSON: 1"):
        check(line in p.stdout, "stdout report lacks %r" % line)
    # Near-dup pairs in the fixture are far from the threshold on both sides.
    for s, (stage, _, dup) in removed.items():
        if stage == "near":
            print("  near duplicate %s of %s" % (s, dup))

    # With near-dup removal off, the two near duplicates come back.
    out2 = os.path.join(work, "docs.nonear.jsonl")
    run(loom, "--in", docs, "-o", out2, "--minhash-threshold", "0", "--quiet")
    check(sum(1 for _ in open(out2)) == len(kept) + 2, "--minhash-threshold 0 keeps near dups")

    # ---- LSH parameters vs datasketch's optimum ----
    for thr, perm in ((0.8, 128), (0.5, 128), (0.9, 64), (0.7, 256)):
        r = os.path.join(work, "lsh.json")
        run(loom, "--in", docs, "-o", os.path.join(work, "lsh.jsonl"), "--report", r, "--quiet",
            "--minhash-threshold", str(thr), "--num-perm", str(perm))
        o = json.load(open(r))["options"]
        want = lsh_optimum(thr, perm)
        check((o["lsh_bands"], o["lsh_rows"]) == want, "LSH %.1f/%d: loom %s, datasketch %s" %
              (thr, perm, (o["lsh_bands"], o["lsh_rows"]), want))

    # ---- HTML ----
    html = os.path.join(fx, "html")
    out3, rep3 = os.path.join(work, "html.jsonl"), os.path.join(work, "html.report.json")
    run(loom, "--html", html, "-o", out3, "--report", rep3, "--quiet")
    recs = [json.loads(l) for l in open(out3, encoding="utf-8")]
    check([r["source"] for r in recs] == ["a_faq.html", "c_long.html"],
          "html kept %s" % [r["source"] for r in recs])
    text = "\n".join(r["text"] for r in recs)
    for marker in ("MARKER", "Previous topic", "color:red", "\u00b6", "Page 3"):
        check(marker not in text, "boilerplate %r left in the HTML text" % marker)
    for want in ("FAQ one\n\nBasics\n\nQuestion 0 about files?", "x = 1\nif x:\n    print(x)",
                 "Long page"):
        check(want in text, "HTML text lacks %r" % want)
    rm = {r["source"]: (r["reason"], r.get("duplicate_of_source"))
          for r in json.load(open(rep3))["removed"]}
    check(rm == {"b_copy.html": ("exact duplicate", "a_faq.html"),
                 "d_near.html": ("near duplicate", "c_long.html"),
                 "e_links.html": ("empty", None)}, "html removals %s" % rm)

    out4, rep4 = os.path.join(work, "qa.jsonl"), os.path.join(work, "qa.report.json")
    run(loom, "--html", html, "-o", out4, "--qa-heading", "3", "--report", rep4, "--quiet")
    qa = [json.loads(l) for l in open(out4, encoding="utf-8")]
    check([q["messages"][0]["content"] for q in qa] ==
          ["Question %d about %s?" % (i, w) for i, w in enumerate(["files", "threads", "memory"])],
          "QA headings %s" % [q["messages"][0]["content"] for q in qa])
    check(all(q["messages"][1]["role"] == "assistant" and len(q["messages"][1]["content"]) > 100
              for q in qa), "QA answers")
    check(qa and qa[-1]["messages"][1]["content"].endswith("x = 1\nif x:\n    print(x)"),
          "the <pre> after the last question belongs to its answer")
    st = {s["stage"]: s for s in json.load(open(rep4))["stages"]}
    check(st["html"]["in"] == 5 and st["html"]["out"] == 6 and st["exact"]["out"] == 3,
          "QA stage counts %s" % {k: (v["in"], v["out"]) for k, v in st.items()})

    # ---- tokenisation + packing (LOOMPAK1), Llama-3 tokenizer.json ----
    tokjson = os.path.join(src_dir, "model", "data", "llama3-tokenizer", "tokenizer.json")
    out5, bin5 = os.path.join(work, "pack.jsonl"), os.path.join(work, "pack.bin")
    run(loom, "--html", html, "-o", out5, "--tokenizer", tokjson, "--tokens", bin5,
        "--pack-len", "64", "--quiet")
    texts = [json.loads(l)["text"] for l in open(out5, encoding="utf-8")]
    check_pack(bin5, tokjson, texts, 64)
    # Chat records cannot be packed: exit 1, one line, no files left behind.
    bad_bin = os.path.join(work, "chat.bin")
    p = subprocess.run([loom, "data", "prep", "--in", docs, "-o", os.path.join(work, "chat.jsonl"),
                        "--tokenizer", tokjson, "--tokens", bad_bin], capture_output=True, text=True)
    check(p.returncode == 1 and "a chat record" in p.stderr and not os.path.exists(bad_bin) and
          not any(f.startswith("chat.") for f in os.listdir(work)), "chat + --tokens: %r" % p.stderr)

    # ---- errors: one line, exit 1, no output file ----
    bad_out = os.path.join(work, "never.jsonl")
    p = subprocess.run([loom, "data", "prep", "--in", os.path.join(work, "missing.jsonl"), "-o",
                        bad_out], capture_output=True, text=True)
    check(p.returncode == 1 and "missing.jsonl" in p.stderr and len(p.stderr.splitlines()) == 1
          and not os.path.exists(bad_out), "missing input: %r" % p.stderr)

    print("check_data_prep: %s" % ("FAILED (%d)" % len(FAILS) if FAILS else "ok"))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
