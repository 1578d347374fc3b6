# SPDX-License-Identifier: MIT
"""Helpers the benchmark scripts share: the machine line, the median, the tileheat binary."""
import os
import platform


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
