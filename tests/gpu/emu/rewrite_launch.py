#!/usr/bin/env python3
"""Rewrite CUDA launches `k<<<g, b, shmem, st>>>(args)` as LC_EMU_LAUNCH(k, g, b, args)
so a .cu file compiles as plain C++ against kernels/cuda/emu.h (tests only)."""
import re
import sys


def split_top(s):
    parts, depth, cur = [], 0, ''
    for ch in s:
        if ch in '([{':
            depth += 1
        elif ch in ')]}':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur.strip())
            cur = ''
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def rewrite(src):
    out = ''
    while True:
        i = src.find('<<<')
        if i < 0:
            return out + src
        m = re.search(r'([A-Za-z_]\w*(?:<[^<>;]*>)?)\s*$', src[:i])
        kern = m.group(1)
        j = src.find('>>>', i)
        cfg = split_top(src[i + 3:j])
        k = src.index('(', j)
        depth, e = 0, k
        while True:
            if src[e] == '(':
                depth += 1
            elif src[e] == ')':
                depth -= 1
                if depth == 0:
                    break
            e += 1
        args = src[k + 1:e]
        out += src[:m.start(1)] + 'LC_EMU_LAUNCH(%s, %s, %s, %s)' % (kern, cfg[0], cfg[1], args)
        src = src[e + 1:]


sys.stdout.write(rewrite(open(sys.argv[1]).read()))
