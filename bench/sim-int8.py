#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Simulate tileheat's int8 quantisation in PyTorch on CMU-1-Small-Region's 117 tiles (tile mode),
to try a quantisation scheme before building it in C.

    /usr/bin/python3 bench/sim-int8.py MODEL.onnx [--data ../shared/data]

What it simulates is what engine-dnnl.c's plan_conv_int8 does: every convolution but the first
takes its input as u8 (255 = the layer's largest value over the calibration sample: 16 tiles
evenly spaced in tile order), s8 weights with a symmetric scale per output channel, the bias
corrected by the weights' rounding error times the input's channel means, the last convolution's
output in float. Pooling commutes with the quantisation, so quantising a convolution's input is
quantising the previous output. It prints, against float32 on all tiles: top-class flips, the
largest per-class percentage difference and the per-tile largest probability difference, for

  tensor   one scale per layer (what tileheat does)
  channel  one scale per input channel, folded into the weights (oneDNN's u8 input takes one
           scale; the previous layer's per-channel output scales can give it)

each with both quantised, weights only (act 0) and activations only (wei 0). In tile mode it
reproduces tests/test-int8's numbers for tileheat's scheme (seam-bn: 0.090 points, 2 flips).
"""
import argparse
import os
import sys

import numpy as np
import openslide
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx2torch  # noqa: E402


def fold(trunk):
    """The trunk as ops: ("conv", w, b, stride, padding) with BatchNorm folded, ("relu",),
    ("pool", module)."""
    ops, mods, i = [], list(trunk), 0
    while i < len(mods):
        md = mods[i]
        if isinstance(md, nn.Conv2d):
            w = md.weight.detach().double()
            b = md.bias.detach().double() if md.bias is not None else torch.zeros(w.shape[0])
            if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
                bn = mods[i + 1]
                s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                w = w * s[:, None, None, None]
                b = (b.double() - bn.running_mean.double()) * s + bn.bias.double()
                i += 1
            ops.append(("conv", w.float(), b.float(), md.stride, md.padding))
        elif isinstance(md, nn.ReLU):
            ops.append(("relu",))
        elif isinstance(md, nn.MaxPool2d):
            ops.append(("pool", md))
        else:
            raise SystemExit("not simulated: %s" % md)
        i += 1
    return ops


def run(ops, x, quant=None, record=None):
    """The trunk on x; quant: {"S": {op: per-input-channel scale}, "mean": {op: channel means},
    "act": bool, "wei": bool}; record: {op: the float input of each conv but the first}."""
    convs = [k for k, o in enumerate(ops) if o[0] == "conv"]
    for k, o in enumerate(ops):
        if o[0] == "relu":
            x = F.relu(x)
        elif o[0] == "pool":
            x = o[1](x)
        elif quant and k != convs[0]:
            w, b, S = o[1], o[2], quant["S"][k]
            q = x * S.view(1, -1, 1, 1)
            if quant["act"]:
                q = torch.clamp(torch.round(q), 0, 255)
            wp = w / S.view(1, -1, 1, 1)
            sw = 127 / wp.abs().amax(dim=(1, 2, 3)).clamp_min(1e-30)
            wq = wp * sw.view(-1, 1, 1, 1)
            if quant["wei"]:
                wq = torch.clamp(torch.round(wq), -127, 127)
            weff = wq / sw.view(-1, 1, 1, 1) * S.view(1, -1, 1, 1)
            shift = ((weff - w).double().sum(dim=(2, 3)) @ quant["mean"][k].double()).float()
            x = F.conv2d(q, wq, None, o[3], o[4]) / sw.view(1, -1, 1, 1) + \
                (b - shift).view(1, -1, 1, 1)
        else:
            if record is not None and k != convs[0]:
                record[k] = x.clone()
            x = F.conv2d(x, o[1], o[2], o[3], o[4])
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", default=os.path.join("..", "shared", "data"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    m = onnx2torch.load(args.model)
    ops = fold(m.trunk)
    slide = openslide.OpenSlide(os.path.join(args.data, "slides", "CMU-1-Small-Region.svs"))
    ts = m.input_size[0] if m.input_size else 224
    (w, h) = slide.dimensions
    tiles = [np.asarray(slide.read_region((c * ts, r * ts), 0, (ts, ts)).convert("RGB"))
             for r in range(h // ts) for c in range(w // ts)]
    x = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float()
    mean = torch.tensor(m.mean).view(1, 3, 1, 1)
    std = torch.tensor(m.std).view(1, 3, 1, 1)
    x = (x * m.scale - mean) / std
    n = len(tiles)
    sample = [k * n // 16 for k in range(16)]
    dense_w = torch.as_tensor(m.dense_w).float()
    dense_b = torch.as_tensor(m.dense_b).float()

    def probs(f):
        return torch.softmax(f.mean(dim=(2, 3)) @ dense_w.T + dense_b, 1)

    with torch.no_grad():
        rec = {}
        run(ops, x[sample], record=rec)
        pf = probs(run(ops, x))
        print("%s: %d tiles, calibrated on %d" % (args.model, n, len(sample)))
        for mode in ("tensor", "channel"):
            S = {}
            means = {k: v.double().mean(dim=(0, 2, 3)) for k, v in rec.items()}
            for k, v in rec.items():
                if mode == "tensor":
                    S[k] = torch.full((v.shape[1],), 255 / max(v.max().item(), 1e-12))
                else:
                    S[k] = 255 / v.amax(dim=(0, 2, 3)).clamp_min(1e-12)
            for act, wei in ((True, True), (False, True), (True, False)):
                pq = probs(run(ops, x, {"S": S, "mean": means, "act": act, "wei": wei}))
                flips = int((pf.argmax(1) != pq.argmax(1)).sum())
                pct = float((100 * (pq.mean(0) - pf.mean(0))).abs().max())
                dp = (pq - pf).abs().max(1).values
                print("  %-8s act %d wei %d: flips %d, percentages %.3f points, tile |dp| mean "
                      "%.4f max %.4f" % (mode, act, wei, flips, pct, dp.mean(), dp.max()))


if __name__ == "__main__":
    main()
