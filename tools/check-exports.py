#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Check the --geojson and --raw outputs of a tileheat run with independent readers.

Usage: /usr/bin/python3 tools/check-exports.py OUTPUT_DIR

numpy loads cam.npy and probabilities.npy (float32, C order, the shapes tileheat documents);
tiles.geojson is read with json and checked against the shape QuPath 0.4+ imports: a
FeatureCollection of Features whose geometry is a closed Polygon ring in level-0 pixels and whose
properties hold objectType "tile", classification {name, color [r, g, b]} and measurements
{class: probability}. When tiles.csv is there, the feature rectangles and probabilities are
compared with it too. Prints one line per check; exits 1 if any fails. Not part of make check.
"""
import csv
import json
import math
import os
import sys

import numpy as np

failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures += 1
    return cond


def check_npy(out):
    cam_path = os.path.join(out, "cam.npy")
    probs_path = os.path.join(out, "probabilities.npy")
    cam = probs = None
    if os.path.exists(cam_path):
        with open(cam_path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            header = read_header(f)
            offset = f.tell()
        cam = np.load(cam_path)
        check(cam.dtype == np.dtype("<f4") and cam.ndim == 3 and cam.flags.c_contiguous,
              f"cam.npy: {cam.dtype} {cam.shape}, format {version[0]}.{version[1]}, "
              f"fortran_order {header[1]}")
        check(offset % 64 == 0, f"cam.npy: data starts at byte {offset} (a multiple of 64)")
        nan = int(np.isnan(cam).sum())
        finite = cam[~np.isnan(cam)]
        print(f"     cam.npy: {nan} NaN cells of {cam.size}; finite values in "
              f"[{finite.min() if finite.size else 0:.6g}, {finite.max() if finite.size else 0:.6g}]")
        check(not np.isinf(cam).any(), "cam.npy: no infinities")
        if nan:
            # A cell with no tile is NaN for every class at once.
            m = np.isnan(cam)
            check((m == m[:1]).all(), "cam.npy: NaN cells are the same for every class")
    else:
        print(f"     no {cam_path}")
    if os.path.exists(probs_path):
        probs = np.load(probs_path)
        check(probs.dtype == np.dtype("<f4") and probs.ndim == 2,
              f"probabilities.npy: {probs.dtype} {probs.shape}")
        if probs.size:
            err = float(np.abs(probs.astype(np.float64).sum(axis=1) - 1).max())
            check(err < 1e-5, f"probabilities.npy: rows sum to 1 (max error {err:.2e})")
        if cam is not None:
            check(cam.shape[0] == probs.shape[1],
                  f"cam.npy and probabilities.npy agree on {probs.shape[1]} classes")
    else:
        print(f"     no {probs_path}")
    return probs


def check_feature(i, f, probs, csv_rows):
    """Problems with feature i, as a list of strings."""
    bad = []
    if f.get("type") != "Feature":
        bad.append("type is not Feature")
    g = f.get("geometry") or {}
    ring = (g.get("coordinates") or [[]])[0]
    if g.get("type") != "Polygon" or len(g.get("coordinates", [])) != 1:
        bad.append("geometry is not a one-ring Polygon")
    elif len(ring) < 4 or ring[0] != ring[-1]:
        bad.append("ring is not closed")
    props = f.get("properties") or {}
    if props.get("objectType") != "tile":
        bad.append("objectType is not tile")
    cls = props.get("classification") or {}
    color = cls.get("color")
    if not isinstance(cls.get("name"), str):
        bad.append("classification has no name")
    if not (isinstance(color, list) and len(color) == 3 and
            all(isinstance(v, int) and 0 <= v <= 255 for v in color)):
        bad.append("classification color is not [r, g, b]")
    ms = props.get("measurements")
    if not isinstance(ms, dict) or not all(isinstance(v, (int, float)) for v in ms.values()):
        bad.append("measurements is not an object of numbers")
        return bad
    names, values = list(ms.keys()), list(ms.values())
    if values and names[int(np.argmax(values))] != cls.get("name"):
        bad.append("classification is not the top measurement")
    if not math.isclose(sum(values), 1.0, abs_tol=1e-5):
        bad.append(f"measurements sum to {sum(values)}")
    if probs is not None and i < len(probs) and \
            not np.array_equal(np.float32(values), probs[i]):
        bad.append("measurements differ from probabilities.npy")
    if csv_rows is not None and i < len(csv_rows) and len(ring) == 5:
        r = csv_rows[i]
        x, y, w, h = (int(r[k]) for k in ("x", "y", "w", "h"))
        if ring != [[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]:
            bad.append("polygon is not the tiles.csv rectangle")
    return bad


def check_geojson(out, probs):
    path = os.path.join(out, "tiles.geojson")
    if not os.path.exists(path):
        print(f"     no {path}")
        return
    with open(path, encoding="utf-8") as f:
        fc = json.load(f)
    feats = fc.get("features", [])
    check(fc.get("type") == "FeatureCollection",
          f"tiles.geojson: a FeatureCollection of {len(feats)} features")
    csv_rows = None
    csv_path = os.path.join(out, "tiles.csv")
    if os.path.exists(csv_path):
        with open(csv_path, newline="", encoding="utf-8") as f:
            csv_rows = list(csv.DictReader(f))
        check(len(csv_rows) == len(feats), f"tiles.geojson: as many features as tiles.csv rows "
              f"({len(csv_rows)})")
    if probs is not None:
        check(len(probs) == len(feats), "tiles.geojson: as many features as probabilities.npy rows")
    problems = {}
    for i, feat in enumerate(feats):
        for p in check_feature(i, feat, probs, csv_rows):
            problems.setdefault(p, []).append(i)
    for p, idx in problems.items():
        check(False, f"tiles.geojson: {p} (features {idx[:5]}{'...' if len(idx) > 5 else ''})")
    check(not problems, "tiles.geojson: every feature has QuPath's tile shape "
          "(Polygon, objectType, classification {name, color}, measurements)")
    classes = {}
    for feat in feats:
        c = feat["properties"]["classification"]
        classes.setdefault(c["name"], [0, c["color"]])[0] += 1
    for name, (n, color) in sorted(classes.items(), key=lambda kv: -kv[1][0]):
        print(f"     class {name!r}: {n} tiles, color {color}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    out = sys.argv[1]
    probs = check_npy(out)
    check_geojson(out, probs)
    print(f"{failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
