#!/usr/bin/env python3
"""Time POST /v1/embeddings served from the LLM (no --embed-model): one
101-token text per request, then 16 copies in one request (run one per engine
turn), through the official `openai` client. Prints ms per text; the machine's
load matters, so compare only within one run.

    /work/pyref/bin/python scripts/bench_llm_embed.py build/loom MODEL.gguf
"""
import os
import sys
import time

import openai

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "serve"))
from serve_util import Server  # noqa: E402


def main():
    loom, model = sys.argv[1], sys.argv[2]
    with Server(loom, model, "--ctx", "512", timeout=120) as s:
        c = openai.OpenAI(base_url=s.base + "/v1", api_key="none", max_retries=0, timeout=120)
        name = c.models.list().data[0].id
        text = "The quick brown fox jumps over the lazy dog. " * 10
        r = c.embeddings.create(model=name, input=text, encoding_format="float")
        print("tokens %d, dimensions %d" % (r.usage.prompt_tokens, len(r.data[0].embedding)))
        n = 10
        t = time.time()
        for _ in range(n):
            c.embeddings.create(model=name, input=text, encoding_format="float")
        one = (time.time() - t) / n
        t = time.time()
        c.embeddings.create(model=name, input=[text] * 16, encoding_format="float")
        batch = (time.time() - t) / 16
        print("ms per text: one per request %.1f, 16 in one request %.1f"
              % (one * 1e3, batch * 1e3))
        s.stop()


if __name__ == "__main__":
    main()
