#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Train tileheat's default tissue model (models/default.onnx) from a real H&E slide, offline.

Classes (in output order): background, stroma, cellular, fat.

Labels come from a fixed, documented rule applied to the slide itself (no annotations, no masks):
colour deconvolution (skimage.color.rgb2hed), brightness/saturation thresholds and morphology on a
2 um grid; see label_map() and patch_label() and models/README.md. The reference tissue masks in
../shared/data/masks are used only to evaluate, never to label.

Training data: CMU-1-Small-Region.svs (0.499 um/px, used as 0.5 um/px) read in place with
openslide-python. Rows 25-50 % of the slide are held out (a spatial region, not random
patches). TCGA-CR-7395-01A-01-TS1.svs has no mpp; its nuclei measure about 6-8 px at level 0,
so it is about 1.0 um/px (see models/README.md) and would have to be upsampled 2x to reach the
model's 0.5 um/px; it is not trained on, only used as an extra tissue/background check.

Model: VGG-style, 3x3 conv (padding 1) + ReLU blocks with 2x2 max-pools, global average pooling,
one dense layer, softmax. Exported to ONNX opset 13 with a fixed 1x3x224x224 NCHW float input,
then annotated with tools/onnx-metadata.py.

Checks printed and written to the report: held-out per-class accuracy; the nine NCT-CRC tiles in
../shared/data/tiles; agreement of predicted background with the CMU reference tissue mask on the
9x13 grid of 224x224 tiles (and the same on the TCGA slide at its estimated mpp).

Run from the repository root (about 5 minutes on 2 cores):
    /usr/bin/python3 tools/train-default-model.py
Writes models/default.onnx and models/default-model.json. Deterministic for a given --seed and
thread count (torch.use_deterministic_algorithms; data preparation is single-threaded numpy).
"""
import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import time

import numpy as np
import onnx
import openslide
import skimage
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage as ndi
from skimage import filters, morphology
from skimage.color import hed_from_rgb, rgb2hed, rgb_from_hed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")

CLASSES = ["background", "stroma", "cellular", "fat"]
BG, STROMA, CELLULAR, FAT = range(4)

# Architecture: numbers are 3x3 conv (padding 1) + ReLU output channels, "M" a 2x2 max-pool.
CFG = [8, "M", 16, "M", 32, 32, "M", 64, 64, 128]
TILE = 224          # exported input size (px at 0.5 um/px)
MPP = 0.5           # training resolution
CMU_MPP = 0.499     # from the slide; used as 0.5 (0.2 % off)
TCGA_MPP = 1.0      # estimated from nuclear size, see models/README.md

# Labelling rule (all on a grid of CELL x CELL px = 2 x 2 um cells of the 0.5 um/px image).
CELL = 4
GLASS_MIN_RGB = 200       # a cell is glass-like when min(R,G,B) of its mean colour >= this ...
GLASS_MAX_SAT = 0.12      # ... and its saturation (max-min)/max <= this
MIN_TISSUE_CELLS = 16     # tissue specks smaller than 64 um^2 are dust
CLOSE_RADIUS = 10         # cells (20 um): closing that decides which glass is enclosed by tissue
H_PERCENTILE = 99         # haematoxylin is normalised by this percentile over tissue cells
H_SMOOTH_SIGMA = 6        # cells (12 um): Gaussian for the local haematoxylin density
CELLULAR_MIN_H = 0.25     # tissue with normalised local haematoxylin density >= this is cellular
# Patch rule (fractions of a patch's cells), by precedence, as a pathologist names a tile by its
# most specific component: cellular if >= CELLULAR_MIN of the patch is cellular, else fat if
# >= FAT_MIN is fat (enclosed white space), else stroma if >= STROMA_MIN is stroma, else
# background if >= BG_MIN is background. A patch whose deciding fraction falls in the AMBIGUOUS
# band just below a threshold (or whose background fraction is below BG_MIN) is skipped.
CELLULAR_MIN = 0.25
FAT_MIN = 0.40
STROMA_MIN = 0.30
AMBIGUOUS = 0.15
BG_MIN = 0.85

# Share of each class in a training batch (fat is rare on the slide: sampled less to limit
# over-fitting to its few regions).
CLASS_WEIGHTS = [0.30, 0.28, 0.30, 0.12]

HOLDOUT = (0.25, 0.50)    # rows 0.25 * height <= y < 0.50 * height of the slide are held out
HOLDOUT_STRIDE = 32       # held-out patches overlap (the region has few fat patches otherwise)

# The nine NCT-CRC-HE-100K tiles and the class each must get (others: informational).
NCT_EXPECT = {"ADI": "fat", "BACK": "background", "STR": "stroma", "MUS": "stroma",
              "LYM": "cellular", "TUM": "cellular"}


def log(msg):
    print(msg, flush=True)


# ------------------------------------------------------------------------------------ slides

def read_rgb(path, level=0, region=None):
    """A slide region as (H, W, 3) uint8 RGB, transparent pixels composited onto white."""
    slide = openslide.OpenSlide(path)
    try:
        x, y, w, h = region or (0, 0) + slide.level_dimensions[level]
        im = slide.read_region((x, y), level, (w, h))
    finally:
        slide.close()
    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    white.alpha_composite(im)
    return np.asarray(white.convert("RGB"))


# ----------------------------------------------------------------------------------- labels

def label_map(img):
    """Per-cell labels (H/CELL, W/CELL) uint8 for an (H, W, 3) uint8 image at 0.5 um/px.

    glass     = cell mean colour bright (min RGB >= 200) and unsaturated (sat <= 0.12)
    tissue    = not glass, specks < 64 um^2 removed
    enclosed  = holes filled after a 20 um morphological closing of tissue
    background= glass outside `enclosed`;  fat = glass inside `enclosed` (lumen, fat, loose gaps)
    cellular  = tissue whose local haematoxylin density (rgb2hed H, normalised by the 99th
                percentile over tissue, Gaussian-averaged over tissue with sigma 12 um) >= 0.25
    stroma    = the other tissue (eosin-dominant)
    """
    h, w = img.shape[0] // CELL * CELL, img.shape[1] // CELL * CELL
    mean = img[:h, :w].reshape(h // CELL, CELL, w // CELL, CELL, 3).astype(np.float64)
    mean = mean.mean(axis=(1, 3))
    mx, mn = mean.max(axis=2), mean.min(axis=2)
    sat = (mx - mn) / np.maximum(mx, 1.0)
    glass = (mn >= GLASS_MIN_RGB) & (sat <= GLASS_MAX_SAT)
    tissue = morphology.remove_small_objects(~glass, MIN_TISSUE_CELLS)
    closed = morphology.binary_closing(tissue, morphology.disk(CLOSE_RADIUS))
    enclosed = ndi.binary_fill_holes(closed)
    hema = rgb2hed(np.round(mean).astype(np.uint8))[..., 0]
    hema = np.clip(hema / np.percentile(hema[tissue], H_PERCENTILE), 0.0, 1.0)
    weight = filters.gaussian(tissue.astype(np.float64), H_SMOOTH_SIGMA)
    density = filters.gaussian(hema * tissue, H_SMOOTH_SIGMA) / np.maximum(weight, 1e-3)
    lab = np.full(tissue.shape, BG, np.uint8)
    lab[enclosed & ~tissue] = FAT
    lab[tissue] = STROMA
    lab[tissue & (density >= CELLULAR_MIN_H)] = CELLULAR
    return lab


def class_integrals(lab):
    """(4, h+1, w+1) integral images of the one-hot label map, for patch fractions."""
    onehot = np.stack([(lab == c) for c in range(len(CLASSES))]).astype(np.int32)
    ii = np.zeros((onehot.shape[0], lab.shape[0] + 1, lab.shape[1] + 1), np.int32)
    ii[:, 1:, 1:] = onehot.cumsum(1).cumsum(2)
    return ii


def patch_fractions(ii, ys, xs, size):
    """Class fractions (N, 4) of size x size px patches at pixel positions (ys, xs)."""
    cy, cx, n = ys // CELL, xs // CELL, size // CELL
    s = ii[:, cy + n, cx + n] - ii[:, cy, cx + n] - ii[:, cy + n, cx] + ii[:, cy, cx]
    return (s / float(n * n)).T


def patch_label(frac):
    """Patch labels (N,) int64 from class fractions (N, 4); -1 marks an ambiguous patch."""
    out = np.full(len(frac), -1, np.int64)
    undecided = np.ones(len(frac), bool)
    for c, least in ((CELLULAR, CELLULAR_MIN), (FAT, FAT_MIN), (STROMA, STROMA_MIN)):
        out[undecided & (frac[:, c] >= least)] = c
        undecided &= frac[:, c] < least - AMBIGUOUS
    out[undecided & (frac[:, BG] >= BG_MIN)] = BG
    return out


def make_patches(ii, y0, y1, width, size, stride):
    """Labelled patch positions fully inside rows [y0, y1): (ys, xs, labels, fractions)."""
    ys, xs = np.meshgrid(np.arange(y0, y1 - size + 1, stride),
                         np.arange(0, width - size + 1, stride), indexing="ij")
    ys, xs = ys.ravel(), xs.ravel()
    frac = patch_fractions(ii, ys, xs, size)
    return ys, xs, patch_label(frac), frac


# ------------------------------------------------------------------------------------ model

class TissueNet(nn.Module):
    """VGG-style trunk -> global average pooling -> one dense layer (-> softmax if asked)."""

    def __init__(self, cfg, n_classes, softmax=False, batchnorm=False):
        super().__init__()
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1)] + \
                    ([nn.BatchNorm2d(v)] if batchnorm else []) + [nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, n_classes)
        self.softmax = softmax

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        x = self.fc(x)
        return torch.softmax(x, dim=1) if self.softmax else x


def conv_flops(cfg, size):
    """2 * 9 * Cin * Cout * H * W summed over the convs, for a size x size input."""
    total, c, s = 0, 3, size
    for v in cfg:
        if v == "M":
            s //= 2
        else:
            total += 2 * 9 * c * v * s * s
            c = v
    return total


def receptive_field(cfg):
    rf, jump = 1, 1
    for v in cfg:
        if v == "M":
            rf, jump = rf + jump, jump * 2
        else:
            rf += 2 * jump
    return rf


# ------------------------------------------------------------------------------ augmentation

HED_FROM_RGB = torch.tensor(hed_from_rgb, dtype=torch.float32)
RGB_FROM_HED = torch.tensor(rgb_from_hed, dtype=torch.float32)


def colour_jitter(x, gen):
    """Stain (HED) and brightness/contrast/saturation jitter; x (B, 3, H, W) float in [0, 1]."""
    b = x.shape[0]
    od = -torch.log(x.clamp(min=1.0 / 255.0))                          # (B, 3, H, W)
    conc = torch.einsum("bchw,cd->bdhw", od, HED_FROM_RGB)
    alpha = 1.0 + (torch.rand(b, 3, 1, 1, generator=gen) * 2 - 1) * torch.tensor(
        [0.30, 0.30, 0.0]).view(1, 3, 1, 1)
    beta = (torch.rand(b, 3, 1, 1, generator=gen) * 2 - 1) * torch.tensor(
        [0.04, 0.04, 0.0]).view(1, 3, 1, 1)
    od = torch.einsum("bdhw,dc->bchw", conc * alpha + beta, RGB_FROM_HED)
    x = torch.exp(-od).clamp(0, 1)
    gray = x.mean(1, keepdim=True)
    sat = 1.0 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * 0.25
    x = gray + (x - gray) * sat
    mean = x.mean((1, 2, 3), keepdim=True)
    contrast = 1.0 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * 0.15
    bright = (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * 0.05
    return ((x - mean) * contrast + mean + bright).clamp(0, 1)


def random_blur(x, gen, p=0.3):
    """Gaussian blur (sigma 0.5-1.2 px) on a random subset of the batch (focus variation)."""
    out = x.clone()
    pick = torch.rand(x.shape[0], generator=gen) < p
    for i in torch.nonzero(pick).flatten().tolist():
        sigma = 0.5 + 0.7 * torch.rand(1, generator=gen).item()
        r = torch.arange(-2, 3, dtype=torch.float32)
        k = torch.exp(-r * r / (2 * sigma * sigma))
        k = k / k.sum()
        img = out[i:i + 1].transpose(0, 1)                               # (3, 1, H, W)
        img = F.conv2d(F.pad(img, (2, 2, 0, 0), mode="reflect"), k.view(1, 1, 1, 5))
        img = F.conv2d(F.pad(img, (0, 0, 2, 2), mode="reflect"), k.view(1, 1, 5, 1))
        out[i] = img.transpose(0, 1)[0]
    return out


def geometric(patch, rng):
    """Random 90-degree rotation and flip of an (H, W, 3) patch."""
    patch = np.rot90(patch, int(rng.integers(4)))
    if rng.integers(2):
        patch = patch[:, ::-1]
    return np.ascontiguousarray(patch)


# --------------------------------------------------------------------------------- training

def crop_scaled(img, y, x, size, scale):
    """A size x size patch centred on the size x size window at (y, x), sampled at 1/scale."""
    side = int(round(size * scale))
    cy, cx = y + size // 2, x + size // 2
    y0 = min(max(cy - side // 2, 0), img.shape[0] - side)
    x0 = min(max(cx - side // 2, 0), img.shape[1] - side)
    patch = img[y0:y0 + side, x0:x0 + side]
    if side == size:
        return patch
    return np.asarray(Image.fromarray(patch).resize((size, size), Image.BILINEAR))


def to_input(batch_u8, mean, std):
    """(B, H, W, 3) uint8 -> normalised (B, 3, H, W) float32 as tileheat feeds the model."""
    x = torch.from_numpy(np.array(batch_u8)).permute(0, 3, 1, 2).float() / 255.0
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def train(net, img, train_sets, args, mean, std):
    """train_sets: {patch size: (ys, xs, labels)}; each step draws one size, then a
    class-balanced batch of patches of that size."""
    sizes = sorted(train_sets)
    by_class = {s: [np.flatnonzero(train_sets[s][2] == c) for c in range(len(CLASSES))]
                for s in sizes}
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / args.steps)))
    net.train()
    t0, run_loss, run_acc = time.time(), 0.0, 0.0
    for step in range(args.steps):
        size = sizes[int(rng.integers(len(sizes)))]
        ys, xs, _ = train_sets[size]
        cls = rng.choice(len(CLASSES), size=args.batch, p=CLASS_WEIGHTS)
        idx = [by_class[size][c][rng.integers(len(by_class[size][c]))] for c in cls]
        batch = np.stack([
            geometric(crop_scaled(img, ys[i], xs[i], size, rng.uniform(0.85, 1.15)), rng)
            for i in idx])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0
        x = random_blur(colour_jitter(x, gen), gen)
        x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
        y = torch.from_numpy(cls)
        out = net(x)
        loss = F.cross_entropy(out, y, label_smoothing=args.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run_loss = 0.98 * run_loss + 0.02 * loss.item()
        run_acc = 0.98 * run_acc + 0.02 * (out.argmax(1) == y).float().mean().item()
        if (step + 1) % 100 == 0 or step + 1 == args.steps:
            k = 1 - 0.98 ** (step + 1)
            log("  step %4d/%d  loss %.3f  acc %.3f  lr %.2e  %.0fs" % (
                step + 1, args.steps, run_loss / k, run_acc / k, sched.get_last_lr()[0],
                time.time() - t0))
    net.eval()
    return time.time() - t0


@torch.no_grad()
def predict(net, batch_u8, mean, std, chunk=32):
    """Softmax probabilities (N, n_classes) for (N, H, W, 3) uint8 patches."""
    out = []
    for i in range(0, len(batch_u8), chunk):
        out.append(torch.softmax(net(to_input(batch_u8[i:i + chunk], mean, std)), 1))
    return torch.cat(out).numpy()


# ----------------------------------------------------------------------------------- checks

def check_holdout(net, img, held, rows, size, mean, std):
    ys, xs, labels = held
    keep = labels >= 0
    patches = np.stack([img[y:y + size, x:x + size] for y, x in zip(ys[keep], xs[keep])])
    pred = predict(net, patches, mean, std).argmax(1)
    truth = labels[keep]
    conf = np.zeros((len(CLASSES), len(CLASSES)), int)
    for t, p in zip(truth, pred):
        conf[t, p] += 1
    per_class = {}
    log("held-out region (rows [%d, %d)), %d unambiguous %dx%d patches:" % (
        rows[0], rows[1], keep.sum(), size, size))
    log("  %-11s %6s %8s   confusion (predicted %s)" % ("class", "n", "accuracy",
                                                       "/".join(CLASSES)))
    for c, name in enumerate(CLASSES):
        n = int(conf[c].sum())
        acc = conf[c, c] / n if n else float("nan")
        per_class[name] = {"n": n, "accuracy": round(float(acc), 4)}
        log("  %-11s %6d %8.3f   %s" % (name, n, acc, conf[c].tolist()))
    overall = float(np.trace(conf) / conf.sum())
    log("  overall accuracy %.3f, balanced %.3f" % (
        overall, np.mean([v["accuracy"] for v in per_class.values() if v["n"]])))
    return {"region": "CMU-1-Small-Region rows [%d, %d) (second quarter from the top)" % rows,
            "patch_px": size, "n_patches": int(keep.sum()),
            "n_ambiguous_skipped": int((~keep).sum()), "per_class": per_class,
            "overall_accuracy": round(overall, 4),
            "balanced_accuracy": round(float(np.mean(
                [v["accuracy"] for v in per_class.values() if v["n"]])), 4),
            "confusion_rows_true_cols_pred": conf.tolist()}


def check_nct(net, tiles_dir, mean, std):
    names = sorted(f for f in os.listdir(tiles_dir) if f.lower().endswith((".tif", ".tiff")))
    imgs = np.stack([np.asarray(Image.open(os.path.join(tiles_dir, f)).convert("RGB"))
                     for f in names])
    prob = predict(net, imgs, mean, std)
    rows, ok_all, min_margin = [], True, 1.0
    log("NCT-CRC tiles (%s):" % tiles_dir)
    log("  %-22s %-10s %-10s %s  %s" % ("tile", "expected", "predicted",
                                       " ".join("%10s" % c for c in CLASSES), "margin"))
    for name, p in zip(names, prob):
        kind = name.split("-")[0]
        want = NCT_EXPECT.get(kind)
        top = CLASSES[int(p.argmax())]
        srt = np.sort(p)
        margin = float(srt[-1] - srt[-2])
        ok = want is None or top == want
        if want is not None:
            ok_all &= ok
            min_margin = min(min_margin, margin if ok else -margin)
        log("  %-22s %-10s %-10s %s  %.3f %s" % (
            name, want or "(any)", top, " ".join("%10.3f" % v for v in p), margin,
            "" if want is None else ("ok" if ok else "WRONG")))
        rows.append({"tile": name, "expected": want, "predicted": top, "margin": round(margin, 4),
                     "probabilities": {c: round(float(v), 4) for c, v in zip(CLASSES, p)}})
    log("  all expected classes hold: %s (smallest top-1 margin %.3f)" % (ok_all, min_margin))
    return {"tiles": rows, "all_expected_hold": bool(ok_all),
            "min_margin_expected": round(min_margin, 4)}


def grid_agreement(net, path, mask_path, mean, std, region_px, name):
    """Tile-level agreement of 'top class is background' with not-tissue in a reference mask.

    Tiles are region_px x region_px level-0 regions from (0, 0), partial edge tiles ignored,
    resized to TILE x TILE when region_px != TILE. A tile counts as tissue when at least half
    of its area in the mask is tissue."""
    slide = openslide.OpenSlide(path)
    w, h = slide.dimensions
    slide.close()
    mask = np.load(mask_path)
    cols, rows = w // region_px, h // region_px
    img = read_rgb(path, 0, (0, 0, cols * region_px, rows * region_px))
    tiles, truth = [], []
    sy, sx = mask.shape[0] / h, mask.shape[1] / w
    for r in range(rows):
        for c in range(cols):
            y0, x0 = r * region_px, c * region_px
            t = img[y0:y0 + region_px, x0:x0 + region_px]
            if region_px != TILE:
                t = np.asarray(Image.fromarray(t).resize((TILE, TILE), Image.BICUBIC))
            tiles.append(t)
            m = mask[int(round(y0 * sy)):int(round((y0 + region_px) * sy)),
                     int(round(x0 * sx)):int(round((x0 + region_px) * sx))]
            truth.append(m.mean() >= 0.5)
    prob = predict(net, np.stack(tiles), mean, std)
    top = prob.argmax(1)
    pred_tissue = top != BG
    truth = np.array(truth)
    agree = float((pred_tissue == truth).mean())
    log("%s: %d x %d tiles of %d px, agreement with the tissue mask %.3f" % (
        name, cols, rows, region_px, agree))
    log("  rows: B = predicted background, S/C/F = stroma/cellular/fat; lower case = mask "
        "disagrees")
    letters = "BSCF"
    for r in range(rows):
        line = ""
        for c in range(cols):
            i = r * cols + c
            ch = letters[top[i]]
            line += ch if pred_tissue[i] == truth[i] else ch.lower()
        log("  " + line)
    counts = {CLASSES[k]: int((top == k).sum()) for k in range(len(CLASSES))}
    return {"slide": os.path.basename(path), "mask": os.path.basename(mask_path),
            "grid_cols": cols, "grid_rows": rows, "region_px": region_px,
            "agreement": round(agree, 4),
            "mask_tissue_tiles": int(truth.sum()), "predicted_tissue_tiles": int(pred_tissue.sum()),
            "tissue_as_background": int((truth & ~pred_tissue).sum()),
            "background_as_tissue": int((~truth & pred_tissue).sum()),
            "top_class_counts": counts,
            "top_class_grid": ["".join(letters[top[r * cols + c]] for c in range(cols))
                               for r in range(rows)]}


# ----------------------------------------------------------------------------------- export

def load_metadata_tool():
    spec = importlib.util.spec_from_file_location(
        "onnx_metadata", os.path.join(REPO, "tools", "onnx-metadata.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def export(net, out_path, meta, batchnorm):
    model = TissueNet(CFG, len(CLASSES), softmax=True, batchnorm=batchnorm)
    model.load_state_dict(net.state_dict())
    model.eval()
    tmp = out_path + ".tmp"
    with torch.no_grad():
        # With BatchNorm, PRESERVE keeps its nodes (EVAL would fold them into the convolutions).
        torch.onnx.export(model, torch.zeros(1, 3, TILE, TILE), tmp, opset_version=13,
                          input_names=["input"], output_names=["probabilities"],
                          do_constant_folding=not batchnorm,
                          training=torch.onnx.TrainingMode.PRESERVE if batchnorm
                          else torch.onnx.TrainingMode.EVAL)
    proto = onnx.load(tmp)
    os.unlink(tmp)
    onnx.checker.check_model(proto)
    proto.graph.name = "tileheat-tissue-bn" if batchnorm else "tileheat-default"
    proto.producer_name = "tileheat tools/train-default-model.py (torch %s)" % torch.__version__
    load_metadata_tool().set_metadata(proto, list(meta.items()))
    load_metadata_tool().save_atomic(proto, out_path)
    return [n.op_type for n in proto.graph.node]


# ------------------------------------------------------------------------------------- main

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slide", default=os.path.join(SHARED, "slides", "CMU-1-Small-Region.svs"))
    ap.add_argument("--tcga", default=os.path.join(SHARED, "slides",
                                                   "TCGA-CR-7395-01A-01-TS1.svs"),
                    help="second slide, for the extra mask check only ('' to skip)")
    ap.add_argument("--tiles", default=os.path.join(SHARED, "tiles"))
    ap.add_argument("--mask", default=os.path.join(SHARED, "masks",
                                                   "tissue-mask-cmu-1-small-region.npy"))
    ap.add_argument("--tcga-mask", default=os.path.join(SHARED, "masks",
                                                        "tissue-mask-tcga-cr-7395.npy"))
    ap.add_argument("--out", default=os.path.join(REPO, "models", "default.onnx"))
    ap.add_argument("--report", default=os.path.join(REPO, "models", "default-model.json"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batchnorm", action="store_true",
                    help="BatchNormalization after every convolution (the int8 tests' trained "
                         "BatchNorm model, tests/data/models/tissue-bn.onnx)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--patches", type=lambda t: [int(v) for v in t.split(",")],
                    default=[64, 96, 128], help="training patch sides, px (one per batch)")
    ap.add_argument("--eval-patch", type=int, default=96, help="held-out patch side, px")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--label-smoothing", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-labels", help="also write the label map as a PNG here")
    return ap.parse_args()


def main():
    args = parse_args()
    t_start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)
    timings = {}

    # 1. Slide and labels.
    t = time.time()
    img = read_rgb(args.slide)                                   # (H, W, 3) uint8, 0.5 um/px
    lab = label_map(img)                                         # (H/4, W/4) uint8
    ii = class_integrals(lab)
    timings["labels_s"] = round(time.time() - t, 1)
    frac_all = np.bincount(lab.ravel(), minlength=len(CLASSES)) / lab.size
    log("slide %s %dx%d; label cells: %s" % (
        os.path.basename(args.slide), img.shape[1], img.shape[0],
        ", ".join("%s %.1f%%" % (c, 100 * f) for c, f in zip(CLASSES, frac_all))))
    if args.save_labels:
        colours = np.array([[255, 255, 255], [240, 130, 170], [70, 20, 150], [250, 210, 0]],
                           np.uint8)
        Image.fromarray(colours[lab]).save(args.save_labels)

    rows = img.shape[0] // CELL * CELL
    h0, h1 = (int(round(rows * f)) // CELL * CELL for f in HOLDOUT)
    train_sets, n_train, n_skipped = {}, {}, 0
    for size in args.patches:
        parts = [make_patches(ii, y0, y1, img.shape[1], size, 8)
                 for y0, y1 in ((0, h0), (h1, rows))]
        ys, xs, labels = (np.concatenate([p[k] for p in parts]) for k in range(3))
        keep = labels >= 0
        train_sets[size] = (ys[keep], xs[keep], labels[keep])
        n_train[size] = {c: int((labels[keep] == k).sum()) for k, c in enumerate(CLASSES)}
        n_skipped += int((~keep).sum())
        log("train positions, %d px patches (rows [0, %d) and [%d, %d), stride 8): %s" % (
            size, h0, h1, rows, n_train[size]))
    held = make_patches(ii, h0, h1, img.shape[1], args.eval_patch, HOLDOUT_STRIDE)[:3]
    n_held = {c: int((held[2] == k).sum()) for k, c in enumerate(CLASSES)}
    log("ambiguous positions skipped: %d" % n_skipped)
    log("held-out patches (rows [%d, %d), stride %d): %s" % (h0, h1, HOLDOUT_STRIDE, n_held))

    # Input normalisation: per-channel mean/std of the training rows, rounded to 3 decimals.
    sub = np.concatenate([img[:h0:4, ::4], img[h1::4, ::4]]).reshape(-1, 3) / 255.0
    mean = torch.tensor(np.round(sub.mean(0), 3), dtype=torch.float32)
    std = torch.tensor(np.round(sub.std(0), 3), dtype=torch.float32)

    # 2. Train.
    net = TissueNet(CFG, len(CLASSES), batchnorm=args.batchnorm)
    n_params = sum(p.numel() for p in net.parameters())
    log("model %s -> GAP -> dense(%d); %d parameters; %.3f GFLOP per %dx%d tile; "
        "receptive field %d px" % (CFG, len(CLASSES), n_params, conv_flops(CFG, TILE) / 1e9,
                                  TILE, TILE, receptive_field(CFG)))
    timings["train_s"] = round(train(net, img, train_sets, args, mean, std), 1)

    # 3. Checks.
    t = time.time()
    holdout = check_holdout(net, img, held, (h0, h1), args.eval_patch, mean, std)
    nct = check_nct(net, args.tiles, mean, std)
    cmu_grid = grid_agreement(net, args.slide, args.mask, mean, std, TILE, "CMU-1-Small-Region")
    tcga_grid = None
    if args.tcga:
        region = int(round(TILE * MPP / TCGA_MPP))
        tcga_grid = grid_agreement(net, args.tcga, args.tcga_mask, mean, std, region,
                                   "TCGA-CR-7395 at an estimated %.2f um/px" % TCGA_MPP)
        tcga_grid["assumed_mpp"] = TCGA_MPP
    timings["checks_s"] = round(time.time() - t, 1)

    # 4. Export and annotate.
    meta = {
        "class_names": ",".join(CLASSES),
        "input_scale": "0.00392156862745098",
        "input_mean": ",".join("%.3f" % v for v in mean.tolist()),
        "input_std": ",".join("%.3f" % v for v in std.tolist()),
        "mpp": "%g" % MPP,
        "input_size": str(TILE),
        "background_classes": "background",
        "source": "trained on CMU-1-Small-Region.svs (OpenSlide test data, freely "
                  "distributable; rows 25-50 %% held out) with rule-based labels (rgb2hed colour "
                  "deconvolution, brightness/saturation thresholds, morphology); "
                  "TCGA-CR-7395-01A-01-TS1.svs "
                  "(TCGA open access) used only as a check; tools/train-default-model.py --seed "
                  "%d%s" % (args.seed, " --batchnorm" if args.batchnorm else ""),
        "created_by": "tileheat tools/train-default-model.py",
        "license": "MIT (weights, as tileheat); training slide CMU-1-Small-Region is freely "
                   "distributable OpenSlide test data, TCGA data is open access",
        "architecture": "conv3x3+%srelu %s, maxpool 2x2 at M, global average pooling, dense "
                        "%d, softmax" % ("batchnorm+" if args.batchnorm else "",
                                         ",".join(str(v) for v in CFG), len(CLASSES)),
        "output": "softmax probabilities",
    }
    t = time.time()
    ops = export(net, args.out, meta, args.batchnorm)
    timings["export_s"] = round(time.time() - t, 1)
    timings["total_s"] = round(time.time() - t_start, 1)
    size = os.path.getsize(args.out)
    log("wrote %s (%d bytes, ops: %s)" % (args.out, size, " ".join(sorted(set(ops)))))

    report = {
        "model": os.path.relpath(args.out, REPO) if args.out.startswith(REPO) else args.out,
        "classes": CLASSES,
        "metadata": meta,
        "architecture": {
            "cfg": CFG, "input": [1, 3, TILE, TILE], "feature_stride": 8,
            "feature_map": [CFG[-1], TILE // 8, TILE // 8],
            "parameters": n_params, "gflop_per_tile": round(conv_flops(CFG, TILE) / 1e9, 4),
            "receptive_field_px": receptive_field(CFG), "onnx_ops": sorted(set(ops)),
            "onnx_opset": 13, "file_bytes": size, "graph_ends_with_softmax": True},
        "labelling_rule": {
            "cell_px": CELL, "glass_min_rgb": GLASS_MIN_RGB, "glass_max_saturation": GLASS_MAX_SAT,
            "min_tissue_cells": MIN_TISSUE_CELLS, "enclosing_closing_radius_cells": CLOSE_RADIUS,
            "haematoxylin_percentile": H_PERCENTILE, "haematoxylin_sigma_cells": H_SMOOTH_SIGMA,
            "cellular_min_density": CELLULAR_MIN_H,
            "patch_precedence": ["cellular", "fat", "stroma", "background"],
            "patch_min_fraction": {"cellular": CELLULAR_MIN, "fat": FAT_MIN,
                                   "stroma": STROMA_MIN, "background": BG_MIN},
            "patch_ambiguous_band": AMBIGUOUS,
            "label_cell_fractions_whole_slide": {c: round(float(f), 4)
                                                 for c, f in zip(CLASSES, frac_all)}},
        "training": {
            "slide": os.path.basename(args.slide), "slide_mpp": CMU_MPP, "used_mpp": MPP,
            "train_rows": [[0, h0], [h1, rows]], "heldout_rows": [h0, h1],
            "heldout_stride_px": HOLDOUT_STRIDE,
            "patch_px": args.patches, "heldout_patch_px": args.eval_patch, "patch_stride_px": 8,
            "train_positions": {str(k): v for k, v in n_train.items()},
            "ambiguous_positions_skipped": n_skipped,
            "heldout_patches": n_held, "steps": args.steps, "batch": args.batch,
            "class_sampling_weights": dict(zip(CLASSES, CLASS_WEIGHTS)), "optimizer": "AdamW",
            "lr": args.lr, "weight_decay": args.weight_decay, "schedule": "linear warm-up 5%, "
            "cosine", "label_smoothing": args.label_smoothing,
            "augmentation": "random 90-degree rotations and flips, scale 0.85-1.15, HED stain "
                            "jitter (x[0.7,1.3] + [-0.04,0.04] on H and E), saturation +-25%, "
                            "contrast +-15%, brightness +-0.05, Gaussian blur sigma 0.5-1.2 on "
                            "30% of patches",
            "seed": args.seed, "threads": args.threads,
            "input_mean": mean.tolist(), "input_std": std.tolist()},
        "tcga_mpp_estimate": {
            "value": TCGA_MPP, "method": "typical nucleus diameter 6-8 px at level 0 (measured on "
            "level-0 crops at 8x with a 10-px grid) against ~7-8 um; equals a 2x-downsampled "
            "20x (0.5 um/px) scan"},
        "heldout": holdout,
        "nct_crc_tiles": nct,
        "cmu_mask_agreement": cmu_grid,
        "tcga_mask_agreement": tcga_grid,
        "timings_s": timings,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "onnx": onnx.__version__, "numpy": np.__version__,
                     "skimage": skimage.__version__, "openslide_python": openslide.__version__},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
    with open(args.report + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    os.replace(args.report + ".tmp", args.report)
    log("wrote %s; total %.0f s" % (args.report, timings["total_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
