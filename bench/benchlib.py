# SPDX-License-Identifier: MIT
"""Helpers the benchmark scripts share: the machine line, the median, the tileheat binary, a
`tileheat multi` run and its outputs, and the cached demo slide and VGG16-GAP model."""
import json
import os
import platform
import shutil
import subprocess
import sys
import time


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line():
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    return ("machine: %s, %d cores (os.cpu_count), %d usable; load average %.2f %.2f %.2f"
            % (cpu_model(), os.cpu_count() or 0, len(os.sched_getaffinity(0)), *load))


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return (xs[n // 2] + xs[(n - 1) // 2]) / 2 if n else float("nan")


def tileheat_command(build):
    """The CLI binary and its environment: libtool's .libs/tileheat with the library path the
    wrapper script would set (the wrapper itself is a bash script costing ~0.1-0.3 s a run, which
    an installed tileheat does not pay), else BUILD/tileheat as it is."""
    real, libs = os.path.join(build, ".libs", "tileheat"), os.path.join(build, "src", ".libs")
    env = dict(os.environ)
    if os.path.exists(real) and os.path.isdir(libs):
        env["LD_LIBRARY_PATH"] = libs + (":" + env["LD_LIBRARY_PATH"]
                                         if env.get("LD_LIBRARY_PATH") else "")
        return real, env
    return os.path.join(build, "tileheat"), env


def run_multi(tileheat, slide, extra, out, threads):
    """`tileheat multi SLIDE -q -o OUT --threads T EXTRA...` with OMP_NUM_THREADS=T (OUT emptied
    first): (wall seconds, run.json's performance, report.json)."""
    if os.path.exists(out):
        shutil.rmtree(out)
    cmd = [tileheat, "multi", slide, "-q", "-o", out, "--threads", str(threads)] + extra
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, env=env)
    wall = time.monotonic() - t0
    with open(os.path.join(out, "run.json")) as f:
        perf = json.load(f)["performance"]
    with open(os.path.join(out, "report.json")) as f:
        rep = json.load(f)
    return wall, perf, rep


def percents(rep):
    """report.json's per-class percentages by class name."""
    return {c["name"]: c["percent"] for c in rep["classes"]}


def ensure_demo(build, path):
    """The 16 000² synthetic slide (examples/gen-demo-slide), made once into path."""
    if not os.path.exists(path):
        subprocess.run([os.path.join(build, "examples", "gen-demo-slide"), "--width", "16000",
                        "--height", "16000", "-o", path], check=True)


def ensure_vgg16(path):
    """The VGG16-GAP benchmark model (bench/gen-vgg16-gap.py), made once into path."""
    if not os.path.exists(path):
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([sys.executable, os.path.join(here, "gen-vgg16-gap.py"), "-o", path],
                       check=True)
