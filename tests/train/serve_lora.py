#!/usr/bin/env python3
"""tests/train/serve_lora.py LOOM MODEL - `loom serve --lora DIR` applies a
PEFT adapter, unmerged, exactly as `loom run --lora DIR` does.

It writes an adapter for MODEL (the serve tests' tiny random model) with
numpy: r 4, alpha 8, A and B random (B large enough to change the greedy
text), all seven projections, in PEFT's file layout (adapter_config.json +
adapter_model.safetensors, F32). Then, greedy (temperature 0):
  * `loom run --lora` and the official openai client against
    `loom serve --lora` (POST /v1/completions) give the same text;
  * the base model gives another text (so the adapter is applied at all);
  * the base server gives the base `loom run` text (the comparison is fair);
  * `loom serve --lora` with a missing adapter exits 1 naming it.
"""
import json
import re
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "serve"))
from serve_util import Server, main_guard  # noqa: E402

try:
    import openai
except ImportError as e:  # installed by scripts/install-deps.sh: missing is a failure
    print("serve_lora: FAIL: %s (run scripts/install-deps.sh)" % e)
    sys.exit(1)

PROMPT = "Once upon a time"
N = 12
PROJ = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj"}


def dims(loom, model):
    """Projection shapes from `loom info` (gguf's Python reader takes ~50 s
    on the 128k-token vocabulary of the model)."""
    out = subprocess.run([loom, "info", model], capture_output=True, check=True, timeout=60)
    text = out.stdout.decode()
    dim, layers = map(int, re.search(r"^dim / layers\s+(\d+) / (\d+)", text, re.M).groups())
    hq, hkv, hd = map(int, re.search(r"^heads\s+(\d+) query, (\d+) kv.*head_dim (\d+)", text,
                                     re.M).groups())
    ffn = int(re.search(r"^ffn\s+(\d+)", text, re.M).group(1))
    shapes = {"attn_q": (dim, hq * hd), "attn_k": (dim, hkv * hd), "attn_v": (dim, hkv * hd),
              "attn_output": (hq * hd, dim), "ffn_gate": (dim, ffn), "ffn_up": (dim, ffn),
              "ffn_down": (ffn, dim)}
    return layers, shapes


def write_adapter(loom, model, d, r=4, alpha=8.0):
    rng = np.random.default_rng(7)
    tensors = {}
    layers, shapes = dims(loom, model)
    for layer in range(layers):
        for proj, (n_in, n_out) in shapes.items():
            pre = "base_model.model.model.layers.%d.%s" % (layer, PROJ[proj])
            tensors[pre + ".lora_A.weight"] = (rng.uniform(-1, 1, (r, n_in)) /
                                               np.sqrt(n_in)).astype(np.float32)
            tensors[pre + ".lora_B.weight"] = rng.uniform(-1, 1, (n_out, r)).astype(np.float32)
    header, off, blobs = {}, 0, []
    for name in sorted(tensors):
        b = tensors[name].tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(d, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
           "lora_dropout": 0.0, "bias": "none", "base_model_name_or_path": model,
           "target_modules": sorted(p.split(".")[1] for p in PROJ.values()),
           "use_rslora": False, "use_dora": False}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(cfg, f)
    return len(tensors)


def clean(text):
    """Random weights emit partial UTF-8 sequences, which the CLI and the
    server replace differently (one U+FFFD per sequence or per byte)."""
    return text.replace("\ufffd", "")


def loom_run(loom, model, *extra):
    # loom serve runs int8 activations for every chunk on the cpu (chunk-
    # invariant output, cli/serve_cmd.c, ADR 0043); run must compute the same
    # way to be compared (its default rounds prefill in f32)
    env = dict(os.environ, LOOM_CPU_ACT="int8")
    out = subprocess.run([loom, "run", "-m", model, "-p", PROMPT, "-n", str(N), "--temp", "0",
                          *extra], capture_output=True, check=True, timeout=120, env=env)
    text = out.stdout.decode("utf-8", "replace")
    assert text.startswith(PROMPT), text[:200]
    return clean(text[len(PROMPT):].rstrip("\n"))


def serve_text(loom, model, *extra):
    name = os.path.basename(model)[: -len(".gguf")]
    with Server(loom, model, "--parallel", "2", "--ctx", "128", *extra) as s:
        c = openai.OpenAI(base_url=s.base + "/v1", api_key="x", max_retries=0, timeout=60)
        r = c.completions.create(model=name, prompt=PROMPT, max_tokens=N, temperature=0)
        log = s.read_log()
    return clean(r.choices[0].text), log


def run(loom, model):
    with tempfile.TemporaryDirectory(prefix="loom_serve_lora_") as d:
        n = write_adapter(loom, model, d)
        assert n > 0, "no projections found in %s" % model
        t0 = time.time()
        base_run = loom_run(loom, model)
        lora_run = loom_run(loom, model, "--lora", d)
        assert lora_run != base_run, "the adapter does not change the greedy text: %r" % base_run
        base_srv, _ = serve_text(loom, model)
        assert base_srv == base_run, (base_srv, base_run)
        lora_srv, log = serve_text(loom, model, "--lora", d)
        assert "applied unmerged" in log, log[-2000:]
        assert lora_srv == lora_run, "serve --lora %r != run --lora %r" % (lora_srv, lora_run)
        print("%.1f s" % (time.time() - t0))
        print("serve --lora == run --lora: %r (base: %r)" % (lora_run, base_run))
        missing = os.path.join(d, "nope")
        p = subprocess.run([loom, "serve", "-m", model, "--port", "0", "--lora", missing],
                           capture_output=True, timeout=120)
        err = p.stderr.decode(errors="replace")
        assert p.returncode == 1 and "loom serve: --lora:" in err and missing in err, (p.returncode, err[-500:])
    print("serve_lora: OK")


if __name__ == "__main__":
    main_guard(run)
