#!/usr/bin/env python3
"""Developer check: loom's 8-bit AdamW golden (tests/train/data/adam8bit_golden.bin,
the numpy replay of bitsandbytes' CUDA kernel that test_adam8bit matches bit
for bit) against bitsandbytes itself, run on the CPU.

  pip install torch bitsandbytes   (or PYTHONPATH=DIR with `pip install --target DIR`)
  python3 scripts/cmp_adam8bit_bitsandbytes.py [GOLDEN]

Not in CI (torch). It reports, per step, how far bnb.optim.AdamW8bit's
parameters, state codes and absmax are from the golden, over all elements and
over the "ordinary" ones: the golden also holds 40 elements whose gradient is
always exactly 0 and 10 with 1e-9 gradients, where bitsandbytes' CPU quantizer
(a binary search that is not exactly nearest, and maps 0.0 to a nonzero code)
and its missing keep-the-sign rule (which the CUDA kernel has) give other
codes. It also compares the dynamic maps: bitsandbytes builds them with
torch.linspace, whose CPU kernel computes start + j*step with a fused
multiply-add on current torch, so the maps can differ from loom's by one ulp.
"""
import os
import struct
import sys

import numpy as np
import torch
import bitsandbytes as bnb
import bitsandbytes.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_adam8bit_golden as gen  # noqa: E402


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "train", "data", "adam8bit_golden.bin")
    d = open(path, "rb").read()
    off = 8
    n, steps = struct.unpack_from("<II", d, off)
    off += 8
    lr, b1, b2, eps, wd = struct.unpack_from("<5f", d, off)
    off += 20 + 1024
    p0 = np.frombuffer(d, "<f4", n, off).copy()
    off += 4 * n
    nb = (n + 255) // 256
    steps_data = []
    for _ in range(steps):
        rec = []
        for dt, cnt in (("<f4", n), ("<f4", n), ("u1", n), ("u1", n), ("<f4", nb), ("<f4", nb)):
            rec.append(np.frombuffer(d, dt, cnt, off).copy())
            off += cnt * np.dtype(dt).itemsize
        steps_data.append(rec)
    for signed in (True, False):
        ours, theirs = gen.create_dynamic_map(signed), F.create_dynamic_map(signed=signed).numpy()
        k = np.nonzero(ours != theirs)[0]
        print("create_dynamic_map(signed=%s): %d of 256 entries differ, max relative %.2g" %
              (signed, len(k), np.max(np.abs(ours[k] - theirs[k]) / np.abs(theirs[k])) if len(k)
               else 0))
    ordinary = np.ones(n, bool)
    ordinary[100:110] = False  # 1e-9 gradients
    ordinary[768:808] = False  # gradients exactly 0
    p = torch.nn.Parameter(torch.tensor(p0))
    opt = bnb.optim.AdamW8bit([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd,
                              min_8bit_size=1)
    for t, (g, ep, em, ev, eam, eav) in enumerate(steps_data, 1):
        p.grad = torch.tensor(g)
        opt.step()
        st = opt.state[p]
        pm, m, v = p.detach().numpy(), st["state1"].numpy(), st["state2"].numpy()
        am = np.max(np.abs(st["absmax1"].numpy() - eam) / eam)
        print("step %d: max|p_bnb - p_loom| all %.3g, ordinary %.3g (lr %g); codes differing "
              "(all/ordinary): m %d/%d, v %d/%d; m absmax max rel. diff %.2g" %
              (t, np.abs(pm - ep).max(), np.abs(pm - ep)[ordinary].max(), lr, np.sum(m != em),
               np.sum((m != em) & ordinary), np.sum(v != ev), np.sum((v != ev) & ordinary), am))


if __name__ == "__main__":
    main()
