#!/usr/bin/env python3
"""Golden for loom's dynamic loss scaler (train/loss_scale.c) from PyTorch's
torch.amp.GradScaler.

Developer-run only (CI has no torch). Drives a real GradScaler("cpu") over a
scripted sequence of steps whose (scaled) gradient is finite, +inf or nan,
and writes tests/train/data/loss_scale_golden.txt, one line per step:

    <case> <step> <grad kind: ok|inf|nan> <skipped 0|1> <scale after update (%.9g)>
           <unscaled grad as the optimizer saw it (%.9g, "nan" when skipped)>

The optimizer is SGD lr 1 on one parameter reset to 0 before each step, so
minus the parameter is the unscaled gradient (0 when the step was skipped).
The unscaled gradient of step i is 0.375 + 0.001 * (i % 7), filled as
(float)(that * scale) (f32) before unscaling. Cases:
  short   init 1024, growth 2, backoff 0.5, interval 3: growth, backoff,
          inf and nan, growth after a backoff, tracker reset by an overflow
  default GradScaler's defaults (65536, 2, 0.5, 2000): an overflow at step 0,
          2000 clean steps (growth at the 2000th), then another overflow
          (only every 250th line and the lines around events are written)
  tiny    init 2, backoff 0.5 repeatedly down below 1 (no floor in torch)

Usage: /work/pyref/bin/python scripts/gen_loss_scale_golden.py
"""
import os

import torch


def run(name, init, growth, backoff, interval, kinds, keep=lambda i: True):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sc = torch.amp.GradScaler("cpu", init_scale=init, growth_factor=growth,
                              backoff_factor=backoff, growth_interval=interval)
    lines = []
    for i, k in enumerate(kinds):
        opt.zero_grad(set_to_none=False)
        loss = sc.scale((p * 0 + 0.75).sum())  # d/dp = 0 ... gradient set below
        loss.backward()
        base = 0.375 + 0.001 * (i % 7)
        g = {"ok": base * sc.get_scale(), "inf": float("inf"), "nan": float("nan")}[k]
        p.grad.fill_(g)
        with torch.no_grad():
            p.zero_()  # lr 1 from 0: -p is exactly the unscaled gradient
        sc.step(opt)
        sc.update()
        delta = -float(p.detach())
        skipped = int(delta == 0.0)
        if keep(i) or k != "ok":
            lines.append("%s %d %s %d %.9g %s" % (name, i, k, skipped, sc.get_scale(),
                                                   "nan" if skipped else "%.9g" % delta))
    return lines


def main():
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    out = os.path.join(root, "tests", "train", "data", "loss_scale_golden.txt")
    short = ["ok", "ok", "ok", "ok", "inf", "ok", "ok", "nan", "ok", "ok", "ok", "ok", "ok",
             "ok", "ok", "inf", "inf", "ok", "ok", "ok"]
    lines = ["# written by scripts/gen_loss_scale_golden.py (torch %s)"
             % torch.__version__.split("+")[0],
             "# case step kind skipped scale_after unscaled_grad",
             "# case short: init 1024 growth 2 backoff 0.5 interval 3",
             "# case default: init 65536 growth 2 backoff 0.5 interval 2000",
             "# case tiny: init 2 growth 2 backoff 0.5 interval 2000"]
    lines += run("short", 1024.0, 2.0, 0.5, 3, short)
    dflt = ["inf"] + ["ok"] * 2000 + ["inf", "ok"]
    lines += run("default", 65536.0, 2.0, 0.5, 2000, dflt,
                 keep=lambda i: i % 250 == 0 or i >= 1998 or i <= 2)
    lines += run("tiny", 2.0, 2.0, 0.5, 2000, ["inf"] * 4 + ["ok"])
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("%s: %d lines" % (out, len(lines)))


if __name__ == "__main__":
    main()
