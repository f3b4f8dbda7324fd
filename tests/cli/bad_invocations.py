#!/usr/bin/env python3
"""Every flag of every `loom` subcommand, fed bad input (ctest bad_invocations).

  bad_invocations.py LOOM WORKDIR

The table below (SPEC) names each subcommand's flags and what values they
take. From it the test makes one invocation per bad value of each flag
(not a number, trailing junk, empty, blanks, overflow, below and above the
range, unknown enum value, missing value) and checks:
  * the exit code is 2, stdout is empty, and stderr's first line names the
    command, the flag and the value (e.g. "loom run: --temp: 'abc' is not a
    number");
  * it failed before any model was created or loaded, and init-model /
    export-gguf did not create their output file;
  * the edge values of each range (and every enum value) are accepted: they
    are passed together with --help, which then exits 0.
It also checks that -h and --help print the subcommand's usage on stdout and
exit 0, that unknown flags exit 2 with the usage on stderr, and that every
flag a usage text mentions is in SPEC (a new flag without a row fails here).

Exit status 0 when everything holds, 1 otherwise (each failure is printed).
"""
import os
import re
import subprocess
import sys

U64_MAX = 2**64 - 1
TIMEOUT_S = 20  # per invocation: parse errors return at once

# kind: ("int", lo, hi) | ("u64",) | ("float", lo, hi) | ("choice", [values])
#       | ("str",) | ("flag",) | ("preset",) | ("op",)
# Flags of main's global options (--backend) are listed where the subcommand
# takes them after its name.
RUN_COMMON = {
    "-m": ("str",), "--model": ("str",),
    "-n": ("int", -1, 1000000), "--n-predict": ("int", -1, 1000000),
    "--temp": ("float", 0, 100),
    "--top-k": ("int", 0, 1000000),
    "--top-p": ("float", 0, 1),
    "--min-p": ("float", 0, 1),
    "--repeat-penalty": ("float", 0.01, 100),
    "--presence-penalty": ("float", -2, 2),
    "--frequency-penalty": ("float", -2, 2),
    "--seed": ("u64",),
    "--ctx": ("int", 0, 16777216),
    "--kv-type": ("choice", ["f16", "q8_0", "f32"]),
    "--quant": ("choice", ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "nf4",
                           "nf4_dq"]),
    "--stop": ("str",),
    "--ignore-eos": ("flag",),
    "--lora": ("str",),
    "--backend": ("str",),
}
# The layer-split flags (cli/args.h, docs/adr/0030) of run, chat, serve,
# bench model and info.
SPLIT = {
    "--gpu-layers": ("layers",),
    "--devices": ("devices",),
    "--tensor-split": ("shares",),
    "--split": ("choice", ["layer", "none"]),
}
RUN_COMMON.update(SPLIT)
# Speculative decoding (cli/spec_flags.c, docs/adr/0038) of run and serve.
SPEC_FLAGS = {
    "--draft": ("str",),
    "--spec": ("choice", ["lookup"]),
    "--spec-k": ("int", 1, 7),
    "--spec-ngram": ("int", 1, 16),
}
GGUF_TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"]
# export-gguf also writes the k-quants (every matrix at one type) and llama.cpp's mixes;
# merge-lora the k-quants but no mix (cli/wtype.c)
KQUANT_TYPES = ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]
EXPORT_TYPES = GGUF_TYPES + KQUANT_TYPES + ["q3_K_M", "q4_K_M", "q5_K_M"]
MERGE_TYPES = GGUF_TYPES + KQUANT_TYPES
SPEC = {
    ("run",): dict(RUN_COMMON, **{"-p": ("str",), "--prompt": ("str",),
                                  "--parallel": ("int", 1, 64), "--tp": ("int", 1, 64),
                                  "--comm": ("choice", ["auto", "mpi", "nccl"]),
                                  **SPEC_FLAGS}),
    ("chat",): dict(RUN_COMMON, **{"--system": ("str",), "-p": ("str",), "--prompt": ("str",),
                                   "--chat-template": ("choice", ["llama3", "chatml", "smollm2",
                                                                  "mistral", "llama2", "zephyr"])}),
    ("perplexity",): {"-m": ("str",), "--model": ("str",), "-f": ("str",), "--file": ("str",),
                       "--ctx": ("int", 4, 1048576), "--chunks": ("int", 0, 1000000),
                       "--batch": ("int", 1, 65536), "-t": ("int", 1, 4096),
                       "--kv-type": ("choice", ["f16", "q8_0", "f32"]),
                       "--quant": ("choice", GGUF_TYPES + ["nf4", "nf4_dq"]), "--backend": ("str",)},
    ("info",): dict(SPLIT, **{"-m": ("str",), "--ctx": ("int", 0, 16777216), "--backend": ("str",),
                              "--kv-type": ("choice", ["f16", "q8_0", "f32"]),
                              "--parallel": ("int", 1, 256)}),
    ("export-gguf",): {"-m": ("str",), "--model": ("str",), "-o": ("str",),
                       "--output": ("str",), "--type": ("choice", EXPORT_TYPES)},
    ("merge-lora",): {"-m": ("str",), "--model": ("str",), "-o": ("str",),
                      "--output": ("str",), "--lora": ("str",),
                      "--type": ("choice", MERGE_TYPES)},
    ("init-model",): {"--preset": ("preset",), "-o": ("str",), "--output": ("str",),
                      "--type": ("choice", GGUF_TYPES), "--seed": ("u64",),
                      "--tokenizer": ("str",)},
    ("demo",): {"--tokens": ("int", 1, 4096), "--backend": ("str",)},
    ("devices",): {"--backend": ("str",)},
    ("test-ops",): {"--backend": ("str",), "--op": ("op",), "--case": ("str",),
                    "--seed": ("u64",), "--golden": ("str",), "--list": ("flag",),
                    "-v": ("flag",), "--verbose": ("flag",)},
    ("bench", "ops"): {"--shapes": ("choice", ["small", "llama3-8b"]),
                       "--backend": ("str",),
                       "--threads": ("int", 1, 4096),
                       "--format": ("choice", ["table", "json", "csv"]),
                       "--compare": ("str",), "--op": ("str",),
                       "--min-time": ("float", 0, 3600),
                       "--clock": ("choice", ["wall", "cpu"]),
                       "--peers": ("choice", ["off", "on"])},
    ("bench", "model"): {"-m": ("str",), "--preset": ("preset",),
                         "--type": ("choice", GGUF_TYPES), "--backend": ("str",),
                         "-p": ("int", 0, 65536), "-n": ("int", 0, 65536), "-pg": ("str",),
                         "-t": ("int", 1, 4096), "-b": ("int", 1, 65536), "--kv-type": ("choice", ["f16", "q8_0", "f32"]),
                         "-r": ("int", 1, 100),
                         "-o": ("choice", ["md", "json", "csv", "jsonl"]), "--save": ("str",),
                         "--plot": ("str",), "--peer": ("choice", ["llama.cpp"]), **SPLIT},
    ("bench", "compare"): {"--fail-below": ("float", 0, 100)},
    ("serve",): {"-m": ("str",), "--model": ("str",), "--host": ("str",),
                 "--port": ("int", 0, 65535), "--parallel": ("int", 1, 256),
                 "--ctx": ("int", 0, 16777216), "--api-key": ("str",),
                 "--api-key-file": ("str",), "--threads": ("int", 1, 256),
                 "--prefill-chunk": ("int", 1, 65536),
                 "--kv-block": ("int", 1, 4096), "--kv-blocks": ("int", 0, 16777216),
                 "--no-prefix-cache": ("flag",),
                 "--max-body": ("int", 1024, 67108864), "--timeout": ("int", 1, 3600),
                 "--cors": ("str",), "--rate-limit": ("float", 0.001, 1000000),
                 "--log-prompts": ("flag",), "--no-access-log": ("flag",),
                 "--backend": ("str",), "--embed-model": ("str",), "--lora": ("str",),
                 "--rag-index": ("str",), "--rag-store": ("str",), "--rag-table": ("str",),
                 **SPLIT, **SPEC_FLAGS},
    ("embed",): {"-m": ("str",), "--model": ("str",), "--json": ("flag",),
                 "-b": ("int", 1, 4096), "--batch": ("int", 1, 4096),
                 "--max-tokens": ("int", 2, 1048576), "--timing": ("flag",),
                 "--backend": ("str",)},
    ("data", "prep"): {"--in": ("str",), "--html": ("str",), "-o": ("str",),
                       "--output": ("str",), "--report": ("str",), "--text-field": ("str",),
                       "--messages-field": ("str",), "--minhash-threshold": ("float", 0, 1),
                       "--ngram": ("int", 1, 64), "--num-perm": ("int", 1, 1024),
                       "--seed": ("u64",), "--qa-heading": ("int", 0, 6),
                       "--min-chars": ("int", 0, 100000000),
                       "--max-url-fraction": ("float", 0, 1),
                       "--max-link-density": ("float", 0, 1), "--keep-emails": ("flag",),
                       "--redact-urls": ("flag",), "--quiet": ("flag",),
                       "--tokenizer": ("str",), "--tokens": ("str",),
                       "--pack-len": ("int", 16, 65535)},
    ("finetune",): {"-m": ("str",), "--model": ("str",), "--data": ("str",), "--eval": ("str",),
                    "-o": ("str",), "--output": ("str",), "--epochs": ("int", 1, 1000),
                    "--max-steps": ("int", 0, 1000000000), "--lr": ("float", 0, 1),
                    "--warmup-ratio": ("float", 0, 1), "--lora-r": ("int", 1, 4096),
                    "--lora-alpha": ("float", 0.001, 1000000), "--lora-dropout": ("float", 0, 0.99),
                    "--targets": ("choice", ["q", "k", "v", "o", "gate", "up", "down"]),
                    "--grad-accum": ("int", 1, 65536), "--seq": ("int", 2, 1048576),
                    "--seed": ("u64",), "--max-grad-norm": ("float", 0, 1000000),
                    "--weight-decay": ("float", 0, 10),
                    "--quant": ("choice", ["f32", "f16", "bf16", "q8_0", "q4_0", "nf4", "nf4_dq"]),
                    "--save-every": ("int", 0, 1000000000), "--eval-every": ("int", 0, 1000000000),
                    "--grad-checkpoint": ("flag",), "--no-grad-checkpoint": ("flag",),
                    "--optim": ("choice", ["adamw", "adamw8bit"]),
                    "--precision": ("choice", ["bf16", "f16", "f32"]),
                    "--chat-template": ("choice", ["llama3", "chatml", "smollm2", "mistral",
                                                   "llama2", "zephyr"]),
                    "--resume": ("flag",), "--quiet": ("flag",), "--backend": ("str",),
                    "--pack": ("flag",),
                    "--comm": ("choice", ["auto", "self", "mpi", "nccl"])},
    ("rag", "build"): {"--vectors": ("str",), "--dim": ("int", 1, 65536), "-o": ("str",),
                       "--type": ("choice", ["f32", "f16", "int8"]),
                       "--metric": ("choice", ["ip", "cosine", "l2"]),
                       "--hnsw": ("str",), "--exact": ("flag",), "--seed": ("u64",),
                       "--threads": ("int", 1, 4096), "--encoder": ("str",),
                       "--store": ("str",), "--table": ("str",), "--meta": ("str",)},
    ("rag", "add"): {"--index": ("str",), "--vectors": ("str",), "--dim": ("int", 1, 65536),
                     "--threads": ("int", 1, 4096)},
    ("rag", "delete"): {"--index": ("str",), "--id": ("int", 0, 4294967279)},
    ("rag", "search"): {"--index": ("str",), "--vector-file": ("str",), "--query-vec": ("str",),
                        "-k": ("int", 1, 10000), "--ef": ("int", 1, 100000), "--exact": ("flag",),
                        "--tag": ("int", -9223372036854775808, 9223372036854775807),
                        "--tag-str": ("str",), "--source": ("str",), "--json": ("flag",),
                        "--threads": ("int", 1, 4096), "--store": ("str",), "--table": ("str",),
                        "--query-file": ("str",), "-m": ("str",), "--encoder": ("str",),
                        "--rerank": ("int", 1, 10000), "--mmr": ("float", 0, 1)},
    ("rag", "index"): {"--docs": ("str",), "-o": ("str",), "-m": ("str",), "--encoder": ("str",),
                       "--chunk": ("int", 8, 8192), "--overlap": ("int", 0, 8191),
                       "--exact": ("flag",), "--dump-chunks": ("str",),
                       "--threads": ("int", 1, 4096), "--store": ("str",), "--table": ("str",)},
    ("rag", "ask"): {"--index": ("str",), "-m": ("str",), "--model": ("str",),
                     "-k": ("int", 1, 100), "-n": ("int", 1, 65536), "--ctx": ("int", 64, 16777216),
                     "--chat-template": ("str",), "--exact": ("flag",), "--show-prompt": ("flag",),
                     "--store": ("str",), "--table": ("str",), "--rerank": ("int", 1, 10000),
                     "--mmr": ("float", 0, 1)},
    ("rag", "info"): {"--index": ("str",)},
    ("rag", "bench"): {"--index": ("str",), "--queries": ("str",), "--gt": ("str",),
                       "-k": ("int", 1, 1000), "--ef": ("str",), "--threads": ("int", 1, 4096)},
}
# The name in error messages ("loom bench: ..." for `loom bench ops`).
ERR_NAME = {("data", "prep"): "data prep", ("bench", "ops"): "bench", ("bench", "model"): "bench model",
            ("bench", "compare"): "bench compare", ("rag", "build"): "rag build",
            ("rag", "add"): "rag add", ("rag", "delete"): "rag delete",
            ("rag", "search"): "rag search", ("rag", "info"): "rag info",
            ("rag", "bench"): "rag bench", ("rag", "index"): "rag index",
            ("rag", "ask"): "rag ask"}

NAN = r"'{v}' is not a number"
RANGE = r"{v} is out of range \({lo}\.\.{hi}\)"


def fmt(x):
    """How the C side prints a range bound (%g for floats)."""
    if isinstance(x, float):
        return "%g" % x
    return str(x)


def bad_values(kind):
    """[(value, stderr pattern with {v})] for one flag kind."""
    k = kind[0]
    if k == "int":
        lo, hi = kind[1], kind[2]
        rng = RANGE.replace("{lo}", re.escape(str(lo))).replace("{hi}", re.escape(str(hi)))
        return [("abc", NAN), ("5x", NAN), ("", NAN), (" 5", NAN), ("1.5", NAN), ("0x10", NAN),
                ("1e3", NAN), (str(lo - 1), rng), (str(hi + 1), rng),
                ("99999999999999999999", rng), ("-99999999999999999999", rng)]
    if k == "u64":
        rng = RANGE.replace("{lo}", "0").replace("{hi}", str(U64_MAX))
        return [("abc", NAN), ("", NAN), ("12junk", NAN), ("0x", NAN), ("0xZZ", NAN),
                ("+5", NAN), ("1e3", NAN), (" 7", NAN), ("-1", rng), (str(U64_MAX + 1), rng),
                ("0x10000000000000000", rng)]
    if k == "float":
        lo, hi = kind[1], kind[2]
        rng = RANGE.replace("{lo}", re.escape(fmt(float(lo)))).replace("{hi}", re.escape(fmt(float(hi))))
        return [("abc", NAN), ("", NAN), ("0.5x", NAN), ("nan", NAN), ("inf", NAN),
                ("-inf", NAN), ("0x1p3", NAN), (" 1", NAN), ("1e999", rng),
                (repr(lo - 0.5), rng), (repr(hi + 0.5), rng)]
    if k == "choice":
        allowed = re.escape(", ".join(kind[1]))
        return [("bogus", r"'{v}' is not one of " + allowed), ("", r"'{v}' is not one of " + allowed),
                ("F16", r"'{v}' is not one of " + allowed)]
    if k == "layers":
        rng = RANGE.replace("{lo}", "0").replace("{hi}", "65536")
        nan = r"'{v}' is not a number or auto"
        return [("abc", nan), ("5x", nan), ("", nan), (" 5", nan), ("1.5", nan), ("0x10", nan),
                ("AUTO", nan), ("-1", rng), ("65537", rng), ("99999999999999999999", rng)]
    if k == "devices":
        return [("", r"'' has an empty entry \(NAME\[:INDEX\],\.\.\.\)"),
                ("cpu,,vulkan", r"'{v}' has an empty entry .*"),
                ("vulkan:", r"'{v}' is not a device \(NAME\[:INDEX\], e\.g\. vulkan:0 or cpu\)"),
                ("Vulkan", r"'{v}' is not a device .*"), ("vulkan:x", r"'{v}' is not a device .*"),
                ("cpu:-1", r"'{v}' is not a device .*"), ("cpu:64", r"'{v}' is not a device .*"),
                ("cpu,cpu", r"'cpu' is listed twice"),
                ("a,b,c,d,e,f,g,h,i", r"more than 8 devices")]
    if k == "shares":
        lst = r"'{v}' is not a list of at most 8 shares \(e\.g\. 3,1\)"
        return [("", lst), ("3,,1", lst), ("3,", lst), ("1,1,1,1,1,1,1,1,1", lst),
                ("abc", r"'abc' is not a number"), ("3,x", r"'x' is not a number"),
                ("nan", r"'nan' is not a number"), ("-1", r"-1 is out of range \(0\.\.1e\+06\)"),
                ("0,0", r"'{v}' gives every device a share of 0")]
    if k == "preset":
        return [("bogus", r"unknown model preset '{v}' \(known: .*tiny-moe.*\)")]
    if k == "op":
        return [("bogus", r"'{v}' is not one of .*matmul.*")]
    return []


def good_values(kind):
    k = kind[0]
    if k == "int":
        return [str(kind[1]), str(kind[2])]
    if k == "u64":
        return ["0", str(U64_MAX), "0xffffffffffffffff", "0x0"]
    if k == "float":
        return [repr(float(kind[1])), repr(float(kind[2])), "%g" % ((kind[1] + kind[2]) / 2)]
    if k == "choice":
        return list(kind[1])
    if k == "preset":
        return ["tiny-moe", "tiny-dense"]
    if k == "op":
        return ["matmul"]
    if k == "layers":
        return ["0", "65536", "auto"]
    if k == "devices":
        return ["cpu", "vulkan:0,cpu", "cuda:1,cuda:0,cpu"]
    if k == "shares":
        return ["3,1", "1", "0,1", "1000000"]
    return ["x"]


class Runner:
    def __init__(self, loom, workdir):
        self.loom, self.workdir = loom, workdir
        self.failures, self.count = [], 0

    def run(self, argv):
        p = subprocess.run([self.loom] + argv, capture_output=True, text=True, errors="replace",
                           timeout=TIMEOUT_S, cwd=self.workdir)
        self.count += 1
        return p

    def fail(self, argv, why, p=None):
        msg = "FAIL loom %s: %s" % (" ".join(repr(a) if (not a or " " in a) else a for a in argv),
                                    why)
        if p is not None:
            msg += "\n    rc=%d\n    stdout: %r\n    stderr: %r" % (p.returncode, p.stdout[:300],
                                                                 p.stderr[:300])
        self.failures.append(msg)

    def expect_usage_error(self, argv, pattern, out_file=None):
        """Exit 2, nothing on stdout, stderr's first line matches pattern,
        no model touched and no output file written."""
        if out_file and os.path.exists(out_file):
            os.remove(out_file)
        p = self.run(argv)
        first = p.stderr.splitlines()[0] if p.stderr else ""
        if p.returncode != 2:
            self.fail(argv, "exit code %d, want 2" % p.returncode, p)
        elif p.stdout:
            self.fail(argv, "wrote to stdout", p)
        elif not re.fullmatch(pattern, first):
            self.fail(argv, "stderr's first line does not match %r" % pattern, p)
        elif re.search(r"creating the default model|^(loading|converting|exporting) ", p.stderr,
                       re.M):
            self.fail(argv, "touched a model before rejecting the arguments", p)
        elif out_file and os.path.exists(out_file):
            self.fail(argv, "created %s" % out_file, p)

    def expect_help(self, argv, cmd_words):
        p = self.run(argv)
        want = r"usage: loom %s" % (re.escape(" ".join(cmd_words)) + r"\b" if cmd_words else r"\[")
        if p.returncode != 0:
            self.fail(argv, "exit code %d, want 0" % p.returncode, p)
        elif p.stderr:
            self.fail(argv, "wrote to stderr", p)
        elif not re.match(want, p.stdout):
            self.fail(argv, "stdout does not start with %r" % want, p)
        return p.stdout


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    loom, workdir = os.path.abspath(sys.argv[1]), sys.argv[2]
    os.makedirs(workdir, exist_ok=True)
    r = Runner(loom, workdir)
    out_gguf = os.path.join(workdir, "must-not-exist.gguf")
    # The default model `loom run` creates on first use, next to the binary.
    default_model = os.path.join(os.path.dirname(loom), "models", "tiny-moe.gguf")
    had_default = os.path.exists(default_model)

    for words, flags in SPEC.items():
        name = ERR_NAME.get(words, words[0])
        words = list(words)
        # Subcommands that write a file get -o first: a bad value after it
        # must still not create the file.
        pre = []
        if words[0] == "init-model":
            pre = ["-o", out_gguf]
        elif words[0] == "export-gguf":
            pre = ["-m", "in.gguf", "-o", out_gguf]
        elif words[0] == "merge-lora":
            pre = ["-m", "in.gguf", "--lora", "adapter", "-o", out_gguf]
        out_file = out_gguf if pre else None

        # --help / -h: usage on stdout, exit 0; the flags it names are in SPEC.
        usage = r.expect_help(words + ["--help"], words)
        r.expect_help(words + ["-h"], words)
        for f in set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", usage)) - {"-h", "--help"}:
            if f not in flags:
                r.fail(words + ["--help"], "usage mentions %s, which the table does not cover" % f)

        # Unknown flags and stray arguments: exit 2, usage on stderr.
        for bad in (["--bogus"], ["-Z"], ["--temp=0.5"] if name in ("run", "chat") else ["stray"]):
            if name == "info" and bad == ["stray"]:
                bad = ["a.gguf", "b.gguf"]  # info takes one positional MODEL
            if name in ("rag search", "rag ask") and bad == ["stray"]:
                bad = ["a query", "stray"]  # search takes one positional text query
            if name == "bench compare" and bad == ["stray"]:
                bad = ["a.json", "b.json", "c.json"]  # compare takes OLD and NEW
            if name == "embed" and bad == ["stray"]:
                bad = ["--batch=4"]  # embed takes any number of TEXT arguments
            argv = words + pre + bad
            r.expect_usage_error(argv, r"loom %s: (unknown option|unexpected argument) '%s'" %
                                 (re.escape(name), re.escape(bad[-1])), out_file)
            p = r.run(argv)
            if "usage: loom" not in p.stderr:
                r.fail(argv, "no usage on stderr", p)

        for flag, kind in sorted(flags.items()):
            if kind[0] == "flag":
                continue
            # Missing value.
            if flag == "--backend" and words[0] in ("run", "chat", "info", "demo", "devices"):
                miss = r"loom %s: --backend needs a value" % re.escape(name)
            else:
                miss = r"loom %s: %s needs a value" % (re.escape(name), re.escape(flag))
            r.expect_usage_error(words + pre + [flag], miss, out_file)
            # Bad values.
            for v, pat in bad_values(kind):
                msg = r"loom %s: %s: %s" % (re.escape(name), re.escape(flag),
                                            pat.replace("{v}", re.escape(v)))
                r.expect_usage_error(words + pre + [flag, v], msg, out_file)
            # Good values parse: with --help after them the command exits 0.
            if kind[0] != "str":
                for v in good_values(kind):
                    r.expect_help(words + [flag, v, "--help"], words)

    # A backend that does not exist: exit 2 before a model is created or read.
    for words in (["run"], ["chat"], ["info"], ["demo"], ["test-ops", "--golden", "none"]):
        r.expect_usage_error(words + ["--backend", "bogus"],
                             r"loom %s: unknown backend 'bogus'( \(known: .*cpu.*\))?" % words[0])
    r.expect_usage_error(["--backend", "bogus", "run"],
                         r"loom run: unknown backend 'bogus' \(known: .*cpu.*\)")
    r.expect_usage_error(["bench", "ops", "--backend", "bogus"],
                         r"loom bench: no available backend named bogus")

    # nf4 has no GGUF type: refused with the reason.
    r.expect_usage_error(["export-gguf", "-m", "in.gguf", "-o", out_gguf, "--type", "nf4"],
                         r"loom export-gguf: --type: 'nf4' is not a GGUF tensor type .*", out_gguf)

    # k-quant names are case-sensitive (llama.cpp's spelling), and merge-lora takes no mix.
    r.expect_usage_error(["export-gguf", "-m", "in.gguf", "-o", out_gguf, "--type", "q4_k_m"],
                         r"loom export-gguf: --type: 'q4_k_m' is not one of f32, .*, q4_K_M, q5_K_M",
                         out_gguf)
    r.expect_usage_error(["merge-lora", "-m", "in.gguf", "--lora", "d", "-o", out_gguf,
                          "--type", "q4_K_M"],
                         r"loom merge-lora: --type: 'q4_K_M' is not one of f32, .*, q6_K", out_gguf)

    # Layer-split flags that contradict each other (cli/args.h).
    for words in (["run"], ["chat"], ["info"], ["serve"], ["bench", "model"]):
        name = ERR_NAME.get(tuple(words), words[0])
        r.expect_usage_error(words + ["--split", "none", "--gpu-layers", "3"],
                             r"loom %s: --split none keeps every weight on the backend; it takes "
                             r"no --devices, --tensor-split or --gpu-layers N" % re.escape(name))
        r.expect_usage_error(words + ["--tensor-split", "3,1", "--gpu-layers", "2"],
                             r"loom %s: --tensor-split and --gpu-layers 2 contradict: .*"
                             % re.escape(name))

    # Speculative decoding: combinations that contradict (run and serve), and
    # run's flags for several sequences, which one speculative stream refuses.
    for cmd in ("run", "serve"):
        r.expect_usage_error([cmd, "--draft", "d.gguf", "--spec", "lookup"],
                             r"loom %s: give --draft MODEL or --spec lookup, not both" % cmd)
        r.expect_usage_error([cmd, "--spec-k", "3"],
                             r"loom %s: --spec-k needs --draft MODEL or --spec lookup" % cmd)
        r.expect_usage_error([cmd, "--draft", "d.gguf", "--spec-ngram", "2"],
                             r"loom %s: --spec-ngram is for --spec lookup" % cmd)
    for flag, v in (("--parallel", "2"), ("--tp", "2"), ("--lora", "dir"), ("--quant", "f16"),
                    ("--split", "none")):
        r.expect_usage_error(["run", "--spec", "lookup", flag, v],
                             r"loom run: %s cannot be combined with speculative decoding "
                             r"\(--draft, --spec\)" % flag)
        # in either order: run's one parser (cli/run_cmd.c) refuses the pair
        r.expect_usage_error(["run", flag, v, "--draft", "d.gguf"],
                             r"loom run: %s cannot be combined with speculative decoding "
                             r"\(--draft, --spec\)" % flag)

    # --comm is --tp's (cli/tp_cmd.c)
    r.expect_usage_error(["run", "--comm", "mpi"], r"loom run: --comm needs --tp N with N > 1")
    r.expect_usage_error(["run", "--tp", "1", "--comm", "nccl"],
                         r"loom run: --comm needs --tp N with N > 1")

    # Repeated-flag limit and required flags.
    r.expect_usage_error(["run"] + ["--stop", "x"] * 9, r"loom run: --stop: at most 8 stop strings")
    r.expect_usage_error(["init-model"], r"loom init-model: -o FILE\.gguf is required")
    r.expect_usage_error(["perplexity", "-f", "x.txt"], r"loom perplexity: -m MODEL is required")
    r.expect_usage_error(["perplexity", "-m", "x.gguf"], r"loom perplexity: -f TEXT is required")
    r.expect_usage_error(["export-gguf", "-o", out_gguf, "--type", "f16"],
                         r"loom export-gguf: -m IN is required", out_gguf)
    r.expect_usage_error(["export-gguf", "-m", "in.gguf", "--type", "f16"],
                         r"loom export-gguf: -o OUT\.gguf is required")
    r.expect_usage_error(["export-gguf", "-m", "in.gguf", "-o", out_gguf],
                         r"loom export-gguf: --type is required", out_gguf)
    # The top level.
    r.expect_usage_error([], r"usage: loom .*")
    r.expect_usage_error(["--bogus"], r"loom: unknown option '--bogus'")
    r.expect_usage_error(["bogus"], r"loom: unknown command 'bogus'")
    r.expect_usage_error(["--backend"], r"loom: --backend needs a value")
    r.expect_usage_error(["bench"], r"usage: loom bench .*")
    r.expect_usage_error(["data"], r"usage: loom data .*")
    r.expect_usage_error(["data", "bogus"], r"loom data: unknown command 'bogus' \(prep\)")
    r.expect_usage_error(["data", "prep", "-o", "x.jsonl"],
                         r"loom data prep: give one input, --in FILE\.jsonl or --html DIR")
    r.expect_usage_error(["data", "prep", "--in", "a.jsonl", "--html", "d", "-o", "x.jsonl"],
                         r"loom data prep: give one input, --in FILE\.jsonl or --html DIR")
    r.expect_usage_error(["data", "prep", "--in", "a.jsonl"],
                         r"loom data prep: -o OUT\.jsonl is required")
    r.expect_usage_error(["data", "prep", "--in", "a.jsonl", "-o", "x.jsonl", "--qa-heading", "3"],
                         r"loom data prep: --qa-heading applies to --html input only")
    r.expect_usage_error(["data", "prep", "--in", "a.jsonl", "-o", "x.jsonl", "--tokens", "t.bin"],
                         r"loom data prep: --tokenizer and --tokens go together")
    r.expect_usage_error(["bench", "bogus"], r"loom bench: unknown benchmark 'bogus' \(ops, model, compare\)")
    # -pg takes one P,N pair; a missing compare file is a usage error.
    for v in ("512", "1,2,3", "a,1", "1,", ",1"):
        r.expect_usage_error(["bench", "model", "-pg", v], r"loom bench model: -pg: .*")
    r.expect_usage_error(["bench", "model", "-p", "1,x"],
                         r"loom bench model: -p: 'x' is not a number")
    r.expect_usage_error(["bench", "model", "--backend", "bogus"],
                         r"loom bench model: unknown backend 'bogus' \(known: .*cpu.*\)")
    r.expect_usage_error(["bench", "compare", "a.json"],
                         r"loom bench compare: OLD\.json and NEW\.json are required")
    # loom rag: required flags, the text query that needs an encoder, bad --hnsw.
    r.expect_usage_error(["rag"], r"usage: loom rag .*")
    r.expect_usage_error(["rag", "bogus"], r"loom rag: unknown command 'bogus' .*")
    r.expect_usage_error(["rag", "build", "-o", "x.lvi"], r"loom rag build: --vectors FILE is required")
    r.expect_usage_error(["rag", "build", "--vectors", "x.npy"],
                         r"loom rag build: -o INDEX or --store URL is required")
    r.expect_usage_error(["rag", "search", "what is loom"],
                         r"loom rag search: a text query needs one of --index INDEX or --store URL")
    r.expect_usage_error(["rag", "search", "--index", "x.lvi", "q", "--query-vec", "1"],
                         r"loom rag search: give a text query or a query vector, not both")
    r.expect_usage_error(["rag", "search", "--index", "x.lvi", "--query-vec", "1", "-m", "minilm"],
                         r"loom rag search: -m ENCODER is for text queries")
    r.expect_usage_error(["rag", "index", "-o", "x.lvi"], r"loom rag index: --docs PATH is required")
    r.expect_usage_error(["rag", "ask", "q"], r"loom rag ask: give one of --index INDEX or --store URL")
    r.expect_usage_error(["rag", "ask", "--index", "x.lvi"], r"loom rag ask: a question is required")
    r.expect_usage_error(["rag", "index", "--docs", "d"], r"loom rag index: -o INDEX or --store URL is required")
    r.expect_usage_error(["serve", "--rag-index", "a", "--rag-store", "b"],
                         r"loom serve: give --rag-index INDEX or --rag-store URL, not both")
    r.expect_usage_error(["serve", "--rag-table", "t"], r"loom serve: --rag-table is for --rag-store")
    r.expect_usage_error(["rag", "search", "--index", "x.lvi", "--query-vec", "1", "--rerank", "4"],
                         r"loom rag search: --rerank is for text queries")
    r.expect_usage_error(["rag", "index", "--docs", "d", "-o", "x", "--chunk", "16", "--overlap", "16"],
                         r"loom rag index: --overlap 16 must be smaller than --chunk 16")
    r.expect_usage_error(["rag", "search", "--index", "x.lvi"],
                         r"loom rag search: give one of --vector-file or --query-vec")
    r.expect_usage_error(["rag", "search", "--query-vec", "1"],
                         r"loom rag search: give one of --index INDEX or --store URL")
    for v in ("16", "a,200", "16,", "2,200", "16,2"):
        r.expect_usage_error(["rag", "build", "--hnsw", v], r"loom rag build: --hnsw: .*")
    r.expect_usage_error(["rag", "bench", "--ef", "16,x"], r"loom rag bench: --ef: 'x' is not a number")
    r.expect_help(["rag", "--help"], ["rag"])
    for argv in (["--help"], ["-h"], ["help"]):
        r.expect_help(argv, [])
    # Every subcommand the top-level usage lists has a row in SPEC (a new
    # subcommand without one fails here).
    top = r.run(["--help"]).stdout
    listed = set(re.findall(r"^  ([a-z][a-z-]+) ", top, re.M)) - {"help"}
    covered = {w[0] for w in SPEC} | {"bench"}
    for cmd in sorted(listed - covered):
        r.fail([cmd], "subcommand %s is in `loom --help` but not in SPEC" % cmd)
    r.expect_help(["bench", "--help"], ["bench"])
    r.expect_help(["bench", "-h"], ["bench"])

    if not had_default and os.path.exists(default_model):
        r.fail([], "the default model %s was created by a bad invocation" % default_model)
    for f in r.failures:
        print(f)
    print("bad_invocations: %d invocations, %d failures" % (r.count, len(r.failures)))
    return 1 if r.failures else 0


if __name__ == "__main__":
    sys.exit(main())
