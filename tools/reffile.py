# SPDX-License-Identifier: MIT
"""The body of a .ref file, the format tileheat's reference tests read (tests/testutil.c,
tu_ref_load): after the head lines a model's generator writes, "meta k=v" lines, the layers, the
tiles, one "block <name> <count>" line per float32 block, a line "data", then the blocks as
little-endian float32 in that order. tools/gen-test-models.py documents the keys. Also the
generators' report of the files they wrote."""
import os

import numpy as np


def write(path, lines, meta, layers, spots, blocks):
    lines = list(lines)
    for k, v in meta.items():
        lines.append("meta %s=%s" % (k, v))
    lines.append("n_layers %d" % len(layers))
    for L in layers:
        lines.append("layer %s %d %d %d %d %d %d %d %d %d %d %d %d %d %d" % (
            L["kind"], L["c_in"], L["c_out"], L["k"][0], L["k"][1], L["s"][0], L["s"][1],
            L["d"][0], L["d"][1], L["p"][0], L["p"][1], L["p"][2], L["p"][3], L["relu"],
            L["ceil"]))
    for (x, y) in spots:
        lines.append("tile %d %d" % (x, y))
    payload = b""
    for name, arr in blocks:
        a = np.ascontiguousarray(arr, dtype="<f4").ravel()
        lines.append("block %s %d" % (name, a.size))
        payload += a.tobytes()
    lines.append("data")
    with open(path, "wb") as f:
        f.write(("\n".join(lines) + "\n").encode())
        f.write(payload)


def print_written(paths, repo):
    """One line per file written (its path in the repository, its size), then the total."""
    total = 0
    for p in paths:
        size = os.path.getsize(p)
        total += size
        print("wrote %-40s %6d bytes" % (os.path.relpath(p, repo), size))
    print("total %d bytes" % total)
