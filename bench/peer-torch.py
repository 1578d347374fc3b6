#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The PyTorch peer of `tileheat multi` for bench/bench-e2e.py: the same tiles, the same model,
the same class probabilities, CAMs and percentages, done the way a PyTorch user would.

  * the model is rebuilt in torch from the ONNX file's weights (bench/onnx2torch.py), wrapped
    with the preprocessing x = (pixel * input_scale - mean) / std from the ONNX metadata, and
    made fast with torch.jit.trace + torch.jit.freeze + torch.jit.optimize_for_inference;
  * torch.set_num_threads(--threads);
  * tiles: every full tile of level 0 in a grid from (0, 0) (partial edge tiles ignored), read with
    openslide-python's OpenSlide.read_region and composited over white (opaque slides: alpha
    dropped); --read-threads > 0 reads each batch with a thread pool (openslide-python releases
    the GIL inside OpenSlide), 0 reads in the main thread;
  * per batch: features = trunk(x); probs = softmax(dense(GAP(features)));
    CAM[c] = sum_k W[c,k] features[k] (bias left out, as tileheat); CAMs kept for every tile;
  * percentages = mean of the probabilities over the tiles x 100.

Prints one JSON object on stdout: the tile count, the seconds of the whole script body after the
imports (model rebuild, JIT, slide open, reading, inference, CAMs, percentages) and of the tile
loop alone, the percentages and, with --probs, the per-tile probabilities.

  /usr/bin/python3 bench/peer-torch.py SLIDE [-m MODEL.onnx] [--threads T] [--batch B]
"""
import argparse
import concurrent.futures
import json
import os
import sys
import time

import numpy as np
import openslide
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx2torch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Peer(nn.Module):
    """uint8 tiles (B, H, W, 3) -> probabilities (B, C) and CAMs (B, C, fh, fw)."""

    def __init__(self, m):
        super().__init__()
        self.trunk = m.trunk
        self.register_buffer("scale", torch.tensor(m.scale, dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(m.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(m.std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("w", m.dense_w.clone())  # (C, K)
        self.register_buffer("b", m.dense_b.clone())  # (C,)

    def forward(self, tiles):
        x = tiles.permute(0, 3, 1, 2).float().contiguous()
        x = (x * self.scale - self.mean) / self.std
        f = self.trunk(x)                                   # (B, K, fh, fw)
        logits = f.mean(dim=(2, 3)) @ self.w.t() + self.b   # (B, C)
        probs = torch.softmax(logits, dim=1)
        cams = torch.einsum("ck,bkhw->bchw", self.w, f)     # (B, C, fh, fw)
        return probs, cams


def build(m, size):
    """The jitted peer module. No separate warm-up: the profiling executor specialises during
    the first real batches, so that cost is in the tile loop and no compute is wasted."""
    net = Peer(m).eval()
    example = torch.zeros((1, size, size, 3), dtype=torch.uint8)  # nothing depends on the batch
    with torch.no_grad():
        traced = torch.jit.trace(net, example, check_trace=False)
        frozen = torch.jit.freeze(traced)
        return torch.jit.optimize_for_inference(frozen)


def read_tile(slide, x, y, size, out):
    """One level-0 tile over white into out (size, size, 3) uint8."""
    rgba = np.asarray(slide.read_region((x, y), 0, (size, size)))
    a = rgba[..., 3]
    if a.min() == 255:
        out[...] = rgba[..., :3]
    else:  # un-premultiplied RGBA over white
        af = a[..., None].astype(np.float32) / 255.0
        out[...] = np.clip(np.rint(rgba[..., :3] * af + 255.0 * (1.0 - af)), 0, 255)


def run(args):
    t_body = time.perf_counter()
    torch.set_num_threads(args.threads)
    m = onnx2torch.load(args.model)
    size = m.input_size[0] if m.input_size else args.tile
    if size <= 0:
        raise SystemExit("peer-torch.py: the model has no input_size: give --tile N")
    fast = build(m, size)
    slide = openslide.OpenSlide(args.slide)
    w0, h0 = slide.dimensions
    cols, rows = w0 // size, h0 // size
    coords = [(c * size, r * size) for r in range(rows) for c in range(cols)]
    n, nc = len(coords), m.dense_w.shape[0]
    probs = np.empty((n, nc), dtype=np.float32)
    cams = None
    buf = np.empty((args.batch, size, size, 3), dtype=np.uint8)
    pool = (concurrent.futures.ThreadPoolExecutor(args.read_threads)
            if args.read_threads > 0 else None)
    t_loop = time.perf_counter()
    sec_read = sec_infer = 0.0
    with torch.no_grad():
        for start in range(0, n, args.batch):
            t0 = time.perf_counter()
            chunk = coords[start:start + args.batch]
            if pool:
                list(pool.map(lambda i: read_tile(slide, chunk[i][0], chunk[i][1], size, buf[i]),
                              range(len(chunk))))
            else:
                for i, (x, y) in enumerate(chunk):
                    read_tile(slide, x, y, size, buf[i])
            t1 = time.perf_counter()
            # Always a full batch (the last one padded with stale tiles): one shape for the JIT.
            p, cam = fast(torch.from_numpy(buf))
            p, cam = p[:len(chunk)], cam[:len(chunk)]
            if cams is None:  # (n, C, fh, fw): every tile's CAMs, as tileheat keeps them
                cams = np.empty((n,) + tuple(cam.shape[1:]), dtype=np.float32)
            probs[start:start + len(chunk)] = p.numpy()
            cams[start:start + len(chunk)] = cam.numpy()
            sec_read += t1 - t0
            sec_infer += time.perf_counter() - t1
    percent = probs.astype(np.float64).mean(axis=0) * 100.0
    t_end = time.perf_counter()
    if pool:
        pool.shutdown()
    out = {
        "slide": args.slide, "model": args.model, "threads": args.threads, "batch": args.batch,
        "read_threads": args.read_threads, "tiles": n, "columns": cols, "rows": rows,
        "cam_shape": list(cams.shape[1:]) if cams is not None else None,
        "seconds": t_end - t_body, "loop_seconds": t_end - t_loop,
        "read_seconds": sec_read, "infer_seconds": sec_infer,
        "classes": m.class_names, "percent": percent.tolist(),
    }
    if args.probs:
        out["coords"] = coords
        out["probs"] = probs.tolist()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="PyTorch peer of `tileheat multi` (see bench/README.md)")
    ap.add_argument("slide")
    ap.add_argument("-m", "--model", default=os.path.join(REPO, "models", "default.onnx"))
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--batch", type=int, default=8, help="tiles per forward call (default 8)")
    ap.add_argument("--read-threads", type=int, default=-1,
                    help="reader threads per batch; 0 = main thread (default: 0 for one "
                    "thread, else --threads)")
    ap.add_argument("--tile", type=int, default=0, help="tile size if the model has no input_size")
    ap.add_argument("--probs", action="store_true", help="also print per-tile probabilities")
    args = ap.parse_args(argv)
    if args.read_threads < 0:
        args.read_threads = args.threads if args.threads > 1 else 0
    json.dump(run(args), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
