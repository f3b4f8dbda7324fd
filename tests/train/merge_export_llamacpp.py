#!/usr/bin/env python3
"""Opt-in ctest merge_export_llamacpp: a bf16 fine-tune of the real
SmolLM2-135M-Instruct, merged and exported, runs in llama.cpp and there gives
loom's greedy tokens (docs/adr/0041).

  merge_export_llamacpp.py LOOM WORKDIR

1. `loom finetune --precision bf16` a few steps on a small repetitive text
   (lr high enough that the adapter moves the model);
2. `loom merge-lora` folds the adapter into the Q4_1 base, stored f16;
3. `loom export-gguf --type q8_0` on the merged file;
4. llama-server (POST /completion, greedy) and `loom serve` (LOOM_CPU_ACT=f32,
   greedy, logprobs) on the exported file, with the criterion of
   scripts/check_llamacpp_smollm2.py: same tokens up to a first divergence,
   if any, after MIN_PREFIX tokens and at a near tie of loom's own top-1 /
   top-2 logits;
5. `loom run` greedy on the merged f16 file gives different text than on the
   base (the merge carried the fine-tune) and the text loom serve gave on the
   export starts the same way for MIN_PREFIX tokens or more (printed).

Exit 77 (skipped) without llama-server (LOOM_LLAMA_SERVER, default
$LOOM_SOURCE_DIR/.llamacpp/build/bin/llama-server) or the model
(LOOM_SMOL_MODEL, default the model cache's SmolLM2-135M-Instruct.Q4_1.gguf).
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import check_llamacpp_smollm2 as ref  # noqa: E402

PROMPTS = ["The capital of France is", "Once upon a time, in a small village by the sea, there lived"]
TEXT = ("The loom project weaves tensors into threads. The loom project weaves tensors into "
        "threads. ")


def sh(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        print("FAIL: %s (exit %d):\n%s" % (" ".join(cmd), p.returncode, p.stdout + p.stderr))
        sys.exit(1)
    return p.stdout + p.stderr


def loom_run_text(loom, model, prompt, env):
    out = subprocess.run([loom, "--backend", "cpu", "run", "-m", model, "-p", prompt, "-n", "16",
                          "--temp", "0"], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print("FAIL: loom run:\n" + out.stdout + out.stderr)
        sys.exit(1)
    return out.stdout


def main():
    loom, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    os.makedirs(work, exist_ok=True)
    src = os.environ.get("LOOM_SOURCE_DIR", os.path.join(HERE, "..", ".."))
    server = os.environ.get("LOOM_LLAMA_SERVER",
                            os.path.join(src, ".llamacpp", "build", "bin", "llama-server"))
    cache = os.environ.get("LOOM_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "loom", "models")
    base = os.environ.get("LOOM_SMOL_MODEL",
                          os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not os.access(server, os.X_OK):
        ref.skip("no llama-server at %s (scripts/build-llamacpp.sh, or set LOOM_LLAMA_SERVER)"
                 % server)
    if not os.path.isfile(base):
        ref.skip("no model %s (scripts/fetch-default-model.sh, or set LOOM_SMOL_MODEL)" % base)
    data = os.path.join(work, "train.jsonl")
    with open(data, "w") as f:
        for _ in range(4):
            f.write(json.dumps({"text": TEXT * 3}) + "\n")
    ft, merged, exported = (os.path.join(work, n) for n in ("ft", "merged.gguf", "export.gguf"))
    env = dict(os.environ, LOOM_CPU_ACT="f32")
    print(sh([loom, "--backend", "cpu", "finetune", "-m", base, "--data", data, "-o", ft,
              "--max-steps", "4", "--grad-accum", "1", "--seq", "64", "--lr", "2e-3",
              "--warmup-ratio", "0", "--lora-r", "8", "--lora-dropout", "0",
              "--precision", "bf16", "--quiet"], env).strip())
    print(sh([loom, "merge-lora", "-m", base, "--lora", ft, "-o", merged, "--type", "f16"]).strip())
    print(sh([loom, "export-gguf", "-m", merged, "-o", exported, "--type", "q8_0"]).strip())
    # the merge carried the fine-tune: the merged model's greedy text is not the base's
    t_base = loom_run_text(loom, base, PROMPTS[0], env)
    t_merged = loom_run_text(loom, merged, PROMPTS[0], env)
    changed = t_base != t_merged
    print("loom run, base:   %r\nloom run, merged: %r -> %s"
          % (t_base, t_merged, "changed" if changed else "FAIL: unchanged"))
    ok = changed
    cport, lport = ref.free_port(), ref.free_port()
    servers = []
    try:
        servers.append(ref.Server("llama-server", [server, "-m", exported, "--host", "127.0.0.1",
                                                   "--port", str(cport), "-t", "2", "-c", "512",
                                                   "-ngl", "0", "-np", "1"],
                                  cport, os.environ, os.path.join(work, "llama.log")))
        servers.append(ref.Server("loom serve", [loom, "--backend", "cpu", "serve", "-m",
                                                 exported, "--host", "127.0.0.1", "--port",
                                                 str(lport), "--threads", "2", "--ctx", "512",
                                                 "--parallel", "1", "--no-prefix-cache"],
                                  lport, env, os.path.join(work, "loom.log")))
        for prompt in PROMPTS:
            ct, cstop = ref.llama_tokens(cport, prompt)
            lt, gaps, lstop = ref.loom_tokens(lport, prompt)
            ok = ref.compare("merged", prompt, lt, gaps, ct,
                             "llama.cpp stop_type %s, loom finish_reason %s" % (cstop, lstop)) and ok
    finally:
        for s in servers:
            s.close()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
