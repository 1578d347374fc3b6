#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Generate tests/data/tissue-refs.txt and the tests/data/tissue-*.pbm masks: the tissue masks that
the method documented at the top of src/tissue.c gives when it is written with independent tools,
for tests/test-tissue.c.

Tools: python3-openslide reads the level (RGBA composited on white), numpy does the exact area
averaging (as matrix products with the pixels' overlaps), skimage's threshold_otsu gives Otsu's threshold, scipy's
Euclidean distance transform does the disk closing and dilation, and scipy's labelling (4-connected)
finds specks and holes. Constants are those of src/tissue.c; keep the two in step.

Each line of tissue-refs.txt:
  slide mpp0 level w h otsu threshold fraction pbm
mpp0 is what the test passes (µm per level-0 pixel; 0 = unknown); otsu and threshold are in 0..1;
the .pbm is the mask (P4, 1 = tissue), a few KB, or "-" for none (to keep tests/data small).

Usage: /usr/bin/python3 tools/gen-tissue-refs.py [DATA_DIR]
(DATA_DIR defaults to ../shared/data next to the repository; writes into tests/data.)
"""
import math
import os
import sys

import numpy as np
import openslide
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

MASK_UM = 8.0
UNKNOWN_MPP = 0.5
MASK_MAX_SIDE = 8192
SAT_FLOOR, SAT_CEIL = 13, 26
PEN_MARGIN = 10.0
DARK_MAX = 40.0
CLOSE_UM, SPECK_UM2, HOLE_UM2, MARGIN_UM = 32.0, 1e4, 1e6, 24.0

# (slide, mpp0 passed by the test, output name). CMU's generic pyramid has mpp only in its TIFF
# resolution tags, which OpenSlide 3.4.1 does not report: the test passes tileheat's 0.499.
CASES = [
    ("CMU-1-Small-Region.svs", 0.499, "tissue-cmu.pbm"),
    ("CMU-1-Small-Region.generic-pyramid.tiff", 0.499, "tissue-cmu-pyramid.pbm"),
    ("TCGA-CR-7395-01A-01-TS1.svs", 0.0, "tissue-tcga.pbm"),
    ("TCGA-CR-7395-01A-01-TS1.svs", 1.0, "-"),
    ("test3-DAPI-2.ndpi", 0.2281751, "tissue-dapi.pbm"),
]


def grid(w0, h0, mpp0):
    mpp = mpp0 if mpp0 > 0 else UNKNOWN_MPP
    s = max(1.0, MASK_UM / mpp, max(w0, h0) / MASK_MAX_SIDE)
    w = max(1, math.ceil(w0 / s - 1e-9))
    h = max(1, math.ceil(h0 / s - 1e-9))
    return w, h, w0 / w, h0 / h, s * mpp


def read_level(sl, level):
    rgba = np.asarray(sl.read_region((0, 0), level, sl.level_dimensions[level])).astype(np.float64)
    a = rgba[..., 3:4] / 255.0
    return rgba[..., :3] * a + 255.0 * (1 - a)


def overlap(n_out, step, n_in, ds, extent):
    """(n_out, n_in): level-0 length shared by mask pixel c, [c step, (c + 1) step), and level
    pixel i, [i ds, (i + 1) ds) cut at the slide's extent."""
    i = np.arange(n_in, dtype=np.float64)
    lo, hi = i * ds, np.minimum((i + 1) * ds, extent)
    c = np.arange(n_out, dtype=np.float64)[:, None]
    return np.maximum(0.0, np.minimum(hi, (c + 1) * step) - np.maximum(lo, c * step))


def saturation_bytes(sl, w, h, sx, sy):
    """Exact area averages of the level's RGB over the mask pixels, then saturation in 0-255."""
    limit = min(sx, sy) * (1 + 1e-9)
    level = max((l for l, d in enumerate(sl.level_downsamples) if d <= limit),
                key=lambda l: sl.level_downsamples[l])
    rgb = read_level(sl, level)
    ds = sl.level_downsamples[level]
    wy = overlap(h, sy, rgb.shape[0], ds, sl.dimensions[1])
    wx = overlap(w, sx, rgb.shape[1], ds, sl.dimensions[0])
    norm = wy.sum(axis=1)[:, None] * wx.sum(axis=1)[None, :]
    avg = np.stack([wy @ rgb[..., c] @ wx.T / norm for c in range(3)], axis=-1)
    mx, mn = avg.max(axis=2), avg.min(axis=2)
    s = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-12), 0.0)
    s[(avg[..., 1] > avg[..., 0] + PEN_MARGIN) | (mx < DARK_MAX)] = 0
    return level, np.floor(s * 255 + 0.5).astype(np.uint8)


def dilate(m, r):
    """Pixels within distance r (inclusive) of a True pixel."""
    if math.floor(r + 1e-9) < 1 or not m.any():
        return m
    return ndi.distance_transform_edt(~m) <= math.sqrt(r * r + 1e-6)


def erode(m, r):
    return ~dilate(~m, r)


def flip_small(m, value, limit):
    lab, n = ndi.label(m == value)
    if n == 0:
        return m
    sizes = np.bincount(lab.ravel())
    flip = sizes < limit
    flip[0] = False
    if not value:
        border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        flip[border] = False
    out = m.copy()
    out[flip[lab]] = not value
    return out


def detect(path, mpp0):
    sl = openslide.OpenSlide(path)
    w0, h0 = sl.dimensions
    w, h, sx, sy, um = grid(w0, h0, mpp0)
    level, sat = saturation_bytes(sl, w, h, sx, sy)
    otsu = int(threshold_otsu(sat))
    k = min(max(otsu, SAT_FLOOR), SAT_CEIL)
    m = sat > k
    m = erode(dilate(m, CLOSE_UM / um), CLOSE_UM / um)
    m = flip_small(m, True, SPECK_UM2 / um ** 2)
    m = flip_small(m, False, HOLE_UM2 / um ** 2)
    m = dilate(m, MARGIN_UM / um)
    return level, w, h, otsu / 255, k / 255, m


def write_pbm(path, m):
    h, w = m.shape
    with open(path, "wb") as f:
        f.write(b"P4\n%d %d\n" % (w, h))
        f.write(np.packbits(m, axis=1).tobytes())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "data")
    out = os.path.join(here, "..", "tests", "data")
    lines = ["# tools/gen-tissue-refs.py: slide mpp0 level w h otsu threshold fraction pbm"]
    for slide, mpp0, pbm in CASES:
        level, w, h, otsu, thr, m = detect(os.path.join(data, "slides", slide), mpp0)
        if pbm != "-":
            write_pbm(os.path.join(out, pbm), m)
        lines.append("%s %.7g %d %d %d %.6f %.6f %.6f %s" % (slide, mpp0, level, w, h, otsu, thr,
                                                            m.mean(), pbm))
    with open(os.path.join(out, "tissue-refs.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
