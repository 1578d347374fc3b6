#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Regenerate the colormap tables in src/render.c from matplotlib's published data.

viridis, inferno and magma are matplotlib's 256-entry ListedColormaps (van der Walt, Smith and
Nuñez; CC0). YlOrRd is ColorBrewer's 9-class sequential scheme (Brewer; Apache-2.0-style licence)
as matplotlib ships it. Each colour is rounded to 8 bits and written as 0xRRGGBB.

The tables live between the `// BEGIN gen-colormaps` and `// END gen-colormaps` lines of
src/render.c, which this script rewrites in place:  /usr/bin/python3 tools/gen-colormaps.py
"""
import os
import re
import sys

import matplotlib
import matplotlib._cm as mpl_cm
from matplotlib import colormaps

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "render.c")
PER_LINE = 9


def hex_table(name, colours):
    vals = ["0x%02x%02x%02x" % tuple(int(round(255 * c)) for c in rgb[:3]) for rgb in colours]
    lines = ["static const uint32_t %s[%d] = {" % (name, len(vals))]
    for i in range(0, len(vals), PER_LINE):
        lines.append("    " + ", ".join(vals[i:i + PER_LINE]) + ",")
    lines.append("};")
    return lines


def main():
    out = ["// BEGIN gen-colormaps (tools/gen-colormaps.py, matplotlib %s; do not edit)"
           % matplotlib.__version__]
    for name in ("viridis", "inferno", "magma"):
        cmap = colormaps[name]
        assert cmap.N == 256
        out += hex_table("cmap_" + name, [cmap(i) for i in range(256)])
    out += hex_table("cmap_ylorrd", mpl_cm._YlOrRd_data)
    out.append("// END gen-colormaps")

    with open(SRC, encoding="utf-8") as f:
        text = f.read()
    pattern = re.compile(r"^// BEGIN gen-colormaps.*?^// END gen-colormaps$", re.S | re.M)
    if not pattern.search(text):
        sys.exit("gen-colormaps.py: no BEGIN/END gen-colormaps markers in " + SRC)
    text = pattern.sub(lambda m: "\n".join(out), text, count=1)
    with open(SRC, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
