#!/bin/sh
# scripts/check_data_prep_pydoc.sh - developer check of `loom data prep` on a
# real document set: Debian's python3.11-doc (apt install python3.11-doc).
#
#   scripts/check_data_prep_pydoc.sh [LOOM] [WORKDIR]
#
# 1. The FAQ pages (html/faq/*.html) split at <h2>..<h3> must give at least
#    170 question/answer records (the pages hold ~175 questions), every
#    question a real heading (ends with '?' or is a sentence), no Sphinx
#    boilerplate ("¶", "Navigation", "Previous topic") in any answer, code
#    blocks with their indentation.
# 2. All 530 pages as plain documents, with packing through the Llama-3
#    tokenizer.json shipped in model/data, timed.
# Not in CI (the package is 30 MB of HTML); ADR 0029 records its numbers.
set -eu
LOOM=${1:-build/loom}
WORK=${2:-/tmp/loom_pydoc_check}
DOC=/usr/share/doc/python3.11/html
SRC=$(cd "$(dirname "$0")/.." && pwd)
[ -d "$DOC/faq" ] || { echo "python3.11-doc is not installed (apt install python3.11-doc)"; exit 77; }
mkdir -p "$WORK"
"$LOOM" data prep --html "$DOC/faq" --qa-heading 3 -o "$WORK/faq.jsonl" --report "$WORK/faq.json"
python3 - "$WORK/faq.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
qs = [r["messages"][0]["content"] for r in recs]
ans = [r["messages"][1]["content"] for r in recs]
bad = [a for a in ans if "\u00b6" in a or "Previous topic" in a or "Navigation" in a]
code = [a for a in ans if "\n    " in a]
print("faq: %d question/answer records, %d with indented code, %d questions end with '?'"
      % (len(recs), len(code), sum(q.endswith("?") for q in qs)))
assert len(recs) >= 170, len(recs)
assert not bad, bad[:1]
assert len(code) >= 20, len(code)
assert sum(q.endswith("?") for q in qs) >= 0.9 * len(qs)
PY
/usr/bin/time -f "all pages: %e s wall, %U s user, %M KB peak" "$LOOM" data prep --html "$DOC" \
    -o "$WORK/all.jsonl" --tokenizer "$SRC/model/data/llama3-tokenizer/tokenizer.json" \
    --tokens "$WORK/all.bin" --pack-len 2048
echo "check_data_prep_pydoc: ok"
