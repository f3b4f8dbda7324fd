#!/usr/bin/env python3
"""Reads loom's TensorBoard event file back with tensorboard's own loader.

  tb_readback.py TEST_TB_WRITER WORKDIR

Runs `TEST_TB_WRITER --write WORKDIR/run` (train/tb_writer.c writes 20 steps
of train/loss and train/lr), loads the directory with tensorboard's
EventAccumulator and checks every step and value, then flips one payload byte
and checks that tensorboard stops at the corrupted record (its reader checks
the masked CRC-32C). tensorboard comes from scripts/requirements-test.txt.
"""
import math
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def expected(step):
    f32 = np.float32
    loss = f32(3.0) * np.exp(f32(-0.1) * f32(step), dtype=f32) + f32(0.25)
    lr = f32(2e-4) * f32(step + 1) / f32(20.0)
    return float(loss), float(lr)


def load(d):
    acc = EventAccumulator(d, size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def main():
    exe, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    run = os.path.join(work, "run")
    path = subprocess.run([exe, "--write", run], check=True, capture_output=True,
                          text=True).stdout.strip()
    acc = load(run)
    tags = sorted(acc.Tags()["scalars"])
    assert tags == ["train/loss", "train/lr"], tags
    loss = acc.Scalars("train/loss")
    lr = acc.Scalars("train/lr")
    assert [e.step for e in loss] == list(range(20)), [e.step for e in loss]
    for which, events in ((0, loss), (1, lr)):
        for e in events:
            want = expected(e.step)[which]
            # expf may differ by an ulp between libm and numpy: a few f32 ulps.
            assert math.isclose(e.value, want, rel_tol=3e-7), (e.step, e.value, want)
            assert e.wall_time == 1.7e9 + e.step, e.wall_time

    # Corrupt the payload of the 5th record (a loss at step 2): tensorboard's
    # reader reports data loss there and delivers nothing after it.
    data = bytearray(open(path, "rb").read())
    off = 0
    for _ in range(4):
        (n,) = struct.unpack_from("<Q", data, off)
        off += 16 + n
    data[off + 14] ^= 0x20
    bad = os.path.join(work, "bad")
    os.makedirs(bad)
    open(os.path.join(bad, os.path.basename(path)), "wb").write(bytes(data))
    acc = load(bad)
    got = len(acc.Scalars("train/loss")) if "train/loss" in acc.Tags()["scalars"] else 0
    assert got < 20, f"tensorboard read {got} loss values past a corrupted CRC"
    print(f"tb_readback: 40 scalars read back by tensorboard; corrupted file stops after {got}")


if __name__ == "__main__":
    main()
