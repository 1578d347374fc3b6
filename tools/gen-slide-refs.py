#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Generate tests/data/slide-refs.txt: what an independent reader sees in every file of the shared
data's slides/, images/ and tiles/ directories, for tests/test-slide.c.

Readers: python3-openslide for whatever OpenSlide recognises (raw premultiplied ARGB through the
ctypes binding, cross-checked against the Pillow images openslide-python returns), Pillow for
plain TIFF and PNG. Pixels are composited on white exactly as tileheat documents:
  premultiplied ARGB (OpenSlide):  out = c + 255 - a
  unassociated alpha (PNG, TIFF):  out = (c * a + 255 * (255 - a) + 127) // 255
  16-bit samples:                  v >> 8
Pixels outside the image are white. Each region is recorded as the FNV-1a 64-bit hash of its RGB
bytes (row-major, interleaved) plus per-channel sums.

Usage: /usr/bin/python3 tools/gen-slide-refs.py [DATA_DIR] > tests/data/slide-refs.txt
(DATA_DIR defaults to ../shared/data next to the repository.)
"""
import ctypes
import os
import subprocess
import sys

import numpy as np
import openslide
from openslide import lowlevel
from PIL import Image

DIRS = ["slides", "images", "tiles"]
# Largest believable µm/px from resolution tags (same rule as src/slide-*.c): a 72 dpi default
# written in centimetres would otherwise claim 353 µm/px.
MAX_RESOLUTION_MPP = 25.0


def fnv1a64(data):
    """FNV-1a 64 over bytes (offset basis 0xcbf29ce484222325, prime 0x100000001b3)."""
    h = 0xCBF29CE484222325
    prime = 0x100000001B3
    mask = (1 << 64) - 1
    for b in bytes(data):
        h = ((h ^ b) * prime) & mask
    return h


def region_line(name, level, x, y, w, h, rgb):
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
    sums = rgb.reshape(-1, 3).sum(axis=0, dtype=np.uint64)
    return "region %s %d %d %d %d %d %016x %d %d %d" % (
        name, level, x, y, w, h, fnv1a64(rgb.tobytes()), sums[0], sums[1], sums[2])


def regions(dims, downsamples):
    """(name, level, x, y, w, h) to record: x, y in level-0 pixels, w, h in level pixels."""
    W, H = dims[0]
    out = [
        ("origin", 0, 0, 0, 224, 224),
        ("interior", 0, W // 3, H // 3, 300, 260),  # > 65536 px: chunked in OpenSlide reads
        ("edge", 0, W - 100, H - 60, 224, 224),  # crosses the right and bottom edges
        ("negative", 0, -7, -5, 32, 32),  # crosses the top-left corner
        ("tiny", 0, W // 2, H // 2, 1, 1),
    ]
    n = len(dims)
    if n > 1:
        out.append(("level1", 1, W // 4, H // 5, 128, 96))
        # the bottom-right corner of the last level, and beyond. At most 65536 px: larger
        # regions are read in chunks, exact only on levels with an integer downsample.
        lw, lh = dims[-1]
        cw, ch = min(lw, 200), min(lh, 150)
        d = downsamples[-1]
        out.append(("last", n - 1, round((lw - cw) * d), round((lh - ch) * d), cw + 5, ch + 3))
        if downsamples[1] == int(downsamples[1]):
            # integer downsample: chunked reads are exact on this level too
            out.append(("level1big", 1, W // 8, H // 8, 320, 256))
    return out


def argb_over_white(argb):
    """(h, w) premultiplied ARGB uint32 -> (h, w, 3) RGB over white."""
    a = (argb >> 24).astype(np.int32)
    chans = [(argb >> s) & 0xFF for s in (16, 8, 0)]
    rgb = np.stack([c.astype(np.int32) + 255 - a for c in chans], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def unassoc_over_white(rgba):
    """(h, w, 4) uint8 unassociated RGBA -> (h, w, 3) RGB over white, rounded."""
    c = rgba[..., :3].astype(np.int64)
    a = rgba[..., 3:4].astype(np.int64)
    return ((c * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def openslide_region(slide, level, x, y, w, h, stats):
    buf = (ctypes.c_uint32 * (w * h))()
    lowlevel._read_region(slide._osr, buf, x, y, level, w, h)  # raises on OpenSlide errors
    argb = np.frombuffer(buf, dtype=np.uint32).reshape(h, w)
    rgb = argb_over_white(argb)
    # Cross-check with openslide-python's public API, which returns un-premultiplied RGBA:
    # re-compositing it can differ by rounding (at most 1) where 0 < alpha < 255. Pixels whose
    # colour exceeds alpha (invalid premultiplied data, which OpenSlide's resampling of
    # boxes.tiff's last level produces) overflow in openslide-python's un-premultiplication,
    # so they are left out of the comparison; the raw path clamps them to 255.
    rgba = np.array(slide.read_region((x, y), level, (w, h)))
    alt = unassoc_over_white(rgba)
    a = argb >> 24
    valid = np.ones(argb.shape, dtype=bool)
    for s in (16, 8, 0):
        valid &= ((argb >> s) & 0xFF) <= a
    diff = np.abs(alt.astype(int) - rgb.astype(int)).max(axis=-1)[valid].max(initial=0)
    stats["partial"] += int((valid & (a % 255 != 0)).sum())
    stats["invalid"] += int((~valid).sum())
    stats["maxdiff"] = max(stats["maxdiff"], int(diff))
    if diff > 1:
        sys.exit("%s: PIL and raw ARGB disagree by %d" % (path_of(slide), diff))
    return rgb


def path_of(slide):
    return getattr(slide, "_filename", repr(slide))


def openslide_mpp(props):
    def num(key):
        try:
            v = float(props[key])
            return v if v > 0 else 0.0
        except (KeyError, ValueError):
            return 0.0

    mx, my = num("openslide.mpp-x"), num("openslide.mpp-y")
    if (mx == 0 or my == 0) and props.get("tiff.ResolutionUnit") == "centimeter":
        rx, ry = num("tiff.XResolution"), num("tiff.YResolution")
        mx = 1e4 / rx if rx else 0.0
        my = 1e4 / ry if ry else 0.0
        if mx > MAX_RESOLUTION_MPP or my > MAX_RESOLUTION_MPP:
            mx = my = 0.0
    return (mx, my) if mx and my else (0.0, 0.0)


def rehash(path, regs):
    """Region lines as computed by fresh Python processes (see describe_openslide)."""
    args = [sys.executable, os.path.abspath(__file__), "--regions", path]
    args += [",".join(str(v) for v in r) for r in regs]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def describe_openslide(path, vendor, stats):
    slide = openslide.OpenSlide(path)
    dims = list(slide.level_dimensions)
    ds = list(slide.level_downsamples)
    if vendor == "generic-tiff":
        # tileheat hides generic-TIFF levels smaller than one tile, from the first such level
        # on: OpenSlide 3.4.1 with libtiff 4.5 returns garbled pixels there (below).
        for i, (w, h) in enumerate(dims):
            p = slide.properties
            if i > 0 and (w < int(p.get("openslide.level[%d].tile-width" % i, 0)) or
                          h < int(p.get("openslide.level[%d].tile-height" % i, 0))):
                dims, ds = dims[:i], ds[:i]
                break
    lines = file_lines(vendor, dims, ds, openslide_mpp(slide.properties))
    regs = regions(dims, ds)
    mine = [region_line(n, l, x, y, w, h, openslide_region(slide, l, x, y, w, h, stats))
            for n, l, x, y, w, h in regs]
    slide.close()
    # OpenSlide 3.4.1 returns run-to-run different pixels on some generic-TIFF levels whose
    # tiles are larger than the level (uninitialised memory; e.g. row 0 of boxes.tiff levels 2
    # and 3): keep only regions that two more processes reproduce exactly.
    # Also, with libtiff 4.5, OpenSlide 3.4.1 garbles generic-TIFF levels narrower than their
    # tiles (libtiff "adapts" the raster width; patch-8-level.tif levels 1-8): not a reference.
    props = slide_props(path)
    others = [rehash(path, regs) for _ in range(2)]
    for i, line in enumerate(mine):
        level = regs[i][1]
        tile_w = int(props.get("openslide.level[%d].tile-width" % level, 0))
        if vendor == "generic-tiff" and dims[level][0] < tile_w:
            lines.append("# region %s skipped: level %d is narrower than its tiles" % (
                regs[i][0], level))
            stats["skipped"] += 1
        elif not all(o[i] == line for o in others):
            lines.append("# region %s skipped: OpenSlide gives nondeterministic pixels"
                         % regs[i][0])
            stats["skipped"] += 1
        else:
            lines.append(line)
    return lines


def slide_props(path):
    slide = openslide.OpenSlide(path)
    props = dict(slide.properties)
    slide.close()
    return props


def regions_mode(path, specs):
    """--regions PATH name,level,x,y,w,h ...: print one region line each (for rehash)."""
    slide = openslide.OpenSlide(path)
    stats = {"partial": 0, "invalid": 0, "maxdiff": 0}
    for spec in specs:
        n, l, x, y, w, h = spec.split(",")
        l, x, y, w, h = int(l), int(x), int(y), int(w), int(h)
        print(region_line(n, l, x, y, w, h, openslide_region(slide, l, x, y, w, h, stats)))


def plain_pixels(im):
    """A Pillow image -> (H, W, 3) uint8 RGB composited on white."""
    if im.mode == "RGB":
        return np.array(im)
    if im.mode == "RGBA":
        return unassoc_over_white(np.array(im))
    if im.mode == "L":
        return np.repeat(np.array(im)[..., None], 3, axis=-1)
    if im.mode in ("P", "LA", "PA"):
        return plain_pixels(im.convert("RGBA"))
    if im.mode in ("I;16", "I;16B", "I"):
        g = (np.array(im).astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=-1)
    sys.exit("unsupported Pillow mode %s" % im.mode)


def plain_mpp(im, fmt):
    if fmt == "tiff":
        tags = im.tag_v2
        if tags.get(296) == 3 and tags.get(282) and tags.get(283):
            mx, my = 1e4 / float(tags[282]), 1e4 / float(tags[283])
            if mx <= MAX_RESOLUTION_MPP and my <= MAX_RESOLUTION_MPP:
                return mx, my
    elif fmt == "png" and "dpi" in im.info:  # Pillow only sets dpi for pHYs in metres
        mx, my = (2.54e4 / float(d) for d in im.info["dpi"])
        if mx <= MAX_RESOLUTION_MPP and my <= MAX_RESOLUTION_MPP:
            return mx, my
    return 0.0, 0.0


def describe_plain(path):
    im = Image.open(path)
    fmt = {"TIFF": "tiff", "PNG": "png"}.get(im.format)
    if fmt is None:
        sys.exit("%s: not a TIFF or PNG" % path)
    im.load()
    pix = plain_pixels(im)
    H, W = pix.shape[:2]
    lines = file_lines(fmt, [(W, H)], [1.0], plain_mpp(im, fmt))
    for name, level, x, y, w, h in regions([(W, H)], [1.0]):
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x0 < x1 and y0 < y1:
            out[y0 - y:y1 - y, x0 - x:x1 - x] = pix[y0:y1, x0:x1]
        lines.append(region_line(name, level, x, y, w, h, out))
    return lines


def file_lines(fmt, dims, ds, mpp):
    lines = ["format %s %d %.9g %.9g" % (fmt, len(dims), mpp[0], mpp[1])]
    for i, ((w, h), d) in enumerate(zip(dims, ds)):
        lines.append("level %d %d %d %.17g" % (i, w, h, d))
    return lines


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--regions":
        regions_mode(sys.argv[2], sys.argv[3:])
        return
    here = os.path.dirname(os.path.abspath(__file__))
    data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "data")
    stats = {"partial": 0, "invalid": 0, "maxdiff": 0, "skipped": 0}
    header = [
        "Generated by tools/gen-slide-refs.py -- do not edit. Regenerate with",
        "  /usr/bin/python3 tools/gen-slide-refs.py /work/shared/data > tests/data/slide-refs.txt",
        "Readers: openslide-python %s (libopenslide %s), Pillow %s." % (
            openslide.__version__, openslide.__library_version__, Image.__version__),
        "Lines: 'file <path under the data dir>', 'format <fmt> <levels> <mpp_x> <mpp_y>',",
        "'level <i> <w> <h> <downsample>' per level, then 'region <name> <level> <x> <y> <w> <h>",
        "<fnv1a64 of the RGB bytes> <sum R> <sum G> <sum B>' (x, y in level-0 px; w, h in level",
        "px; RGB composited on white, white outside the image), and 'end'.",
    ]
    print("\n".join("# " + h for h in header))
    for d in DIRS:
        for name in sorted(os.listdir(os.path.join(data, d))):
            rel = "%s/%s" % (d, name)
            path = os.path.join(data, rel)
            vendor = openslide.OpenSlide.detect_format(path)
            lines = describe_openslide(path, vendor, stats) if vendor else describe_plain(path)
            print("file %s" % rel)
            print("\n".join(lines))
            print("end")
    print("OpenSlide pixels: %d partly transparent (PIL vs raw ARGB max difference %d), "
          "%d invalid premultiplied (clamped); %d regions skipped" % (
              stats["partial"], stats["maxdiff"], stats["invalid"], stats["skipped"]),
          file=sys.stderr)


if __name__ == "__main__":
    main()
