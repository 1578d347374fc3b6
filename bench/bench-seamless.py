#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Seam-free CAMs against --cam tile, side by side in one invocation: the cost of the default
mode's tile phase, peak RSS, and how much the class percentages move.

  /usr/bin/python3 bench/bench-seamless.py [--build build] [--data ../shared/data] [--repeat 3]
                                            [--threads 2] [--cache DIR] [--cases cmu,tcga,demo,vgg16]

Cases (each run with `tileheat multi SLIDE -q -o DIR --threads T [--cam tile]`):
  cmu    CMU-1-Small-Region.svs, models/default.onnx, default options (tissue mask on)
  tcga   TCGA-CR-7395-01A-01-TS1.svs --mpp 1.0, models/default.onnx
  demo   the 16 000² synthetic slide (examples/gen-demo-slide; made once into --cache)
  vgg16  CMU-1-Small-Region.svs with the VGG16-GAP benchmark model (bench/gen-vgg16-gap.py; made
         once into --cache), --min-tissue 0 as in bench-e2e.py

The two modes run alternately --repeat times; the best "tiles" stage of run.json counts (wall
seconds of the tile phase: reading, trunk, CAMs; planning is the "engine plan" stage, shown
apart). Target: seam-free tiles / tile tiles <= 1.2. Peak RSS is
run.json's; the percentages are report.json's per-class `percent`, and the largest difference
between the modes is printed per case.
"""
import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def run(tileheat, slide, extra, out, threads):
    _, perf, rep = benchlib.run_multi(tileheat, slide, extra, out, threads)
    st = perf["stages_seconds"]
    return st["tiles"], st.get("engine plan", 0.0), perf["peak_rss_bytes"] / 2**20, \
        benchlib.percents(rep), rep["tile"].get("cam"), perf.get("trunk_area", 1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--data", default=os.path.join("..", "shared", "data"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--cases", default="cmu,tcga,demo,vgg16")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    tileheat, env = benchlib.tileheat_command(build)
    os.environ.update(env)
    cache = args.cache or os.path.join(build, "bench-cache")
    os.makedirs(cache, exist_ok=True)
    model = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "default.onnx")
    slides = os.path.join(args.data, "slides")
    cases = {
        "cmu": (os.path.join(slides, "CMU-1-Small-Region.svs"), []),
        "tcga": (os.path.join(slides, "TCGA-CR-7395-01A-01-TS1.svs"), ["--mpp", "1.0"]),
        "demo": (os.path.join(cache, "demo-16000x16000.tif"), []),
        "vgg16": (os.path.join(slides, "CMU-1-Small-Region.svs"),
                  ["-m", os.path.join(cache, "vgg16-gap.onnx"), "--min-tissue", "0"]),
    }
    wanted = args.cases.split(",")
    if "demo" in wanted:
        benchlib.ensure_demo(build, cases["demo"][0])
    if "vgg16" in wanted:
        benchlib.ensure_vgg16(os.path.join(cache, "vgg16-gap.onnx"))
    print(benchlib.machine_line())
    print("threads %d, best of %d, modes alternating" % (args.threads, args.repeat))
    tmp = tempfile.mkdtemp(prefix="bench-seamless-")
    rows = []
    for name in wanted:
        slide, extra = cases[name]
        if name not in ("demo", "vgg16"):
            extra = extra + ["-m", model]
        best = {}
        for i in range(args.repeat):
            for mode in ("seamless", "tile"):
                t, plan, rss, pct, used, area = run(tileheat, slide, extra + ["--cam", mode],
                                              os.path.join(tmp, name + mode), args.threads)
                print("  %-6s %-8s run %d: tiles %.3f s (plan %.3f s), peak RSS %.0f MiB, cam %s, "
                      "trunk area %.3f" % (name, mode, i + 1, t, plan, rss, used, area),
                      flush=True)
                b = best.get(mode)
                if b is None or t < b[0]:
                    best[mode] = (t, plan, rss, pct, area)
        s, t = best["seamless"], best["tile"]
        diff = max(abs(s[3][c] - t[3][c]) for c in s[3])
        rows.append((name, s[0], t[0], s[0] / t[0], s[4], s[1], s[2], t[2], diff,
                     ", ".join("%s %.1f/%.1f" % (c, s[3][c], t[3][c]) for c in s[3])))
    shutil.rmtree(tmp)
    print()
    print("%-6s %10s %10s %7s %6s %8s %9s %9s %8s  %s" % (
        "case", "seamless s", "tile s", "ratio", "area", "plan s", "RSS seam", "RSS tile",
        "max |Δ%|", "percent seamless/tile"))
    for r in rows:
        print("%-6s %10.3f %10.3f %6.2fx %6.3f %8.3f %8.0fM %8.0fM %8.2f  %s" % r)
    print("target: ratio <= 1.20")


if __name__ == "__main__":
    main()
