#!/usr/bin/env python3
"""PyTorch + peft peer for `loom finetune` timings (docs/PERF.md, developer-run).

Runs the same recipe as `loom finetune` on the same GGUF model and JSONL text
data: float32 on cpu, LoRA r/alpha/dropout on q,k,v,o,gate,up,down, AdamW
(torch defaults, weight decay 0), batch 1, sequences truncated to --seq
tokens, gradient clipping 1.0, one optimizer step per --grad-accum examples.
Prints the mean seconds per optimizer step (first step excluded when there
are more than one) and the peak resident memory of the process.

  python3 scripts/bench_finetune_peft.py --model M.gguf --data train.jsonl \
      [--steps 2] [--seq 512] [--grad-accum 1] [--lora-r 64] [--threads N]
Needs torch, transformers (with gguf), peft: the /work/pyref venv.
"""
import argparse
import json
import os
import resource
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--lora-r", type=int, default=64)
    ap.add_argument("--lora-alpha", type=float, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d, f = os.path.split(os.path.abspath(a.model))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    cfg = LoraConfig(r=a.lora_r, lora_alpha=a.lora_alpha, lora_dropout=0.05, bias="none",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                     "up_proj", "down_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4,
                            weight_decay=0.0)
    texts = [json.loads(l)["text"] for l in open(a.data) if l.strip()]
    times = []
    k = 0
    for s in range(a.steps):
        t0 = time.perf_counter()
        for _ in range(a.grad_accum):
            ids = tok(texts[k % len(texts)], return_tensors="pt").input_ids[:, :a.seq]
            k += 1
            loss = model(input_ids=ids, labels=ids).loss / a.grad_accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
        print("step %d loss %.4f %.3f s (%d tokens)" % (s + 1, float(loss) * a.grad_accum,
                                                         times[-1], ids.shape[1]), flush=True)
    use = times[1:] if len(times) > 1 else times
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("peft: %.3f s/step (mean of %d), peak RSS %.0f MiB, threads %d"
          % (sum(use) / len(use), len(use), rss, a.threads))


if __name__ == "__main__":
    main()
