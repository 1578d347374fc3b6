#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Cohort benchmark: `tileheat batch multi COHORT` (one process: model loaded and engine planned
once, one worker per thread running a slide each) against a shell loop of `tileheat multi`, one
process per slide, in one invocation.

  /usr/bin/python3 bench/bench-batch.py [--tileheat BUILD/tileheat] [--repeat 3] [--pairs 3]
                                         [--rows 24] [--keep] [--one-core]
                                         [--try-env OMP_WAIT_POLICY=passive] [--env VAR=VALUE]

1. A cohort of --rows rows alternating CMU-1-Small-Region.svs and its generic-pyramid TIFF
   (ids cmu-00, pyr-01, ...) is written into a temporary folder.
2. Loop vs batch: `bash -c 'while read ...; do tileheat multi SLIDE -o DIR/ID -q --threads T;
   done'` (process start counts, as in a user's script) and `tileheat batch multi COHORT -o OUTDIR
   -q --threads T`, alternately, --repeat times; the best wall time of each counts. Target:
   loop / batch >= 1.4x.
3. Batch scaling: batch at --threads 1 then --threads 2, back to back, --pairs times; the median of
   the pair ratios t1/t2 counts (target >= 1.85x), with their range. The CPU seconds, cores busy
   and the ceiling cpu(2 threads) / 2 sets on t1/t2 are printed; --one-core adds a run of
   --threads 1 pinned to one CPU (taskset) to each pair.
4. Where the time goes: the mean of every stage of the slides' run.json
   (performance.stages_seconds) at 1 and 2 threads, and the per-slide overhead left: the
   core-seconds a slide costs outside its tile loop (cpu / rows - the tile loop's thread-seconds),
   and what batch saves over the loop (loop cpu - batch cpu) / rows.
5. Correctness: heatmap.png and tiles.csv of one slide of each kind are byte-identical between the
   batch and the loop, and every batch line says `done`.

Times are wall times of whole processes (time.perf_counter around the child), every run into a
fresh output folder. The CPU time other processes took meanwhile (/proc/stat busy time minus the
run's own) is shown next to a run when it is over 5% of its wall time, and a warning at the end:
on a 2-core machine one other busy process distorts every figure. --try-env VAR=VALUE runs batch
at 2 threads without and with that setting, --pairs times alternately (e.g. OMP_WAIT_POLICY=passive
or GOMP_SPINCOUNT=0: with two workers, two OpenMP teams share the cores).
A libtool wrapper script (an uninstalled BUILD/tileheat) is replaced by its .libs/tileheat with the
library path the wrapper would set, as bench-e2e.py does: the wrapper costs ~0.03-0.3 s a start,
which an installed tileheat does not pay, and it would count 24 times in the loop and once in the
batch (--no-unwrap keeps it).
Exit status 1 when a correctness check fails (a missed target is reported, not an error).
"""
import argparse
import csv
import filecmp
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import machine_line, median  # noqa: E402

REPO = os.path.dirname(HERE)
DEFAULT_TILEHEAT = os.path.join(REPO, "build", "tileheat")
SLIDES = ("CMU-1-Small-Region.svs", "CMU-1-Small-Region.generic-pyramid.tiff")
PREFIX = ("cmu", "pyr")
LOOP_TARGET = 1.4
SCALING_TARGET = 1.85

# The shell loop of step 2: $1 tileheat, $2 cohort CSV (header slide,id; absolute paths), $3 the
# output folder, $4 the thread count. One process per slide, one after another; the first
# failure stops the loop with its status.
LOOP_SCRIPT = r'''
set -e
while IFS=, read -r slide id; do
    "$1" multi "$slide" -o "$3/$id" -q --threads "$4" </dev/null
done < <(tail -n +2 "$2")
'''


class BenchError(Exception):
    pass


def is_libtool_wrapper(path):
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"#!") and b"libtool" in head


def tileheat_command(path, unwrap, extra_env):
    """(executable, environment, description). An uninstalled libtool wrapper becomes the real
    binary in .libs/ with LD_LIBRARY_PATH set to the library's .libs/ folders next to it."""
    path = os.path.abspath(path)
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise BenchError("tileheat not found or not executable: %s (build it, or give "
                         "--tileheat PATH)" % path)
    env = dict(os.environ)
    env.update(extra_env)
    build = os.path.dirname(path)
    real = os.path.join(build, ".libs", os.path.basename(path))
    if unwrap and is_libtool_wrapper(path) and os.path.isfile(real):
        libs = [d for d in (os.path.join(build, "src", ".libs"), os.path.join(build, ".libs"))
                if os.path.isdir(d)]
        env["LD_LIBRARY_PATH"] = ":".join(libs + ([env["LD_LIBRARY_PATH"]]
                                                  if env.get("LD_LIBRARY_PATH") else []))
        return real, env, "%s (libtool wrapper %s unwrapped, LD_LIBRARY_PATH=%s)" % (
            real, path, ":".join(libs))
    return path, env, path


def busy_seconds():
    """CPU seconds the whole machine has spent busy (all cores; /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def timed(cmd, env):
    """Run cmd; return (CompletedProcess, wall seconds, user+system CPU seconds, CPU seconds
    the rest of the machine spent meanwhile: other processes competing for the cores)."""
    b0 = busy_seconds()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b1 = busy_seconds()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    other = max(0.0, b1 - b0 - cpu) if b0 is not None and b1 is not None else 0.0
    return p, wall, cpu, other


def check_run(p, what):
    if p.returncode != 0:
        raise BenchError("%s failed (exit status %d)\n--- stderr ---\n%s--- stdout (last 20 "
                         "lines) ---\n%s" % (what, p.returncode, p.stderr or "(empty)\n",
                                             "\n".join(p.stdout.splitlines()[-20:])))


def check_tileheat(exe, env):
    p = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env)
    check_run(p, "%s --version" % exe)
    version = (p.stdout or p.stderr).strip().splitlines()[0]
    p = subprocess.run([exe, "batch", "multi", "--help"], capture_output=True, text=True, env=env)
    if p.returncode != 0 or "COHORT" not in p.stdout + p.stderr:
        raise BenchError("%s has no `batch multi` command (is it an older build?)\n%s"
                         % (exe, p.stderr))
    return version


def write_cohort(folder, slides, rows):
    os.makedirs(folder)
    path = os.path.join(folder, "cohort.csv")
    ids = []
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["slide", "id"])
        for i in range(rows):
            ids.append("%s-%02d" % (PREFIX[i % 2], i))
            w.writerow([slides[i % 2], ids[-1]])
    return path, ids


def read_stages(outdir, ids):
    """{id: stages_seconds} from OUTDIR/ID/run.json."""
    out = {}
    for i in ids:
        path = os.path.join(outdir, i, "run.json")
        try:
            with open(path) as f:
                out[i] = json.load(f)["performance"]["stages_seconds"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BenchError("cannot read performance.stages_seconds from %s: %s" % (path, exc))
    return out


def run_loop(ctx, threads, outdir):
    exe, env = ctx["exe"], ctx["env"]
    cmd = ["bash", "-c", LOOP_SCRIPT, "bash", exe, ctx["cohort"], outdir, str(threads)]
    p, wall, cpu, other = timed(cmd, env)
    check_run(p, "the shell loop of `%s multi SLIDE -o %s/ID -q --threads %d`"
              % (exe, outdir, threads))
    return {"wall": wall, "cpu": cpu, "other": other, "dir": outdir,
            "stages": read_stages(outdir, ctx["ids"])}


def run_batch(ctx, threads, outdir, env_extra=None, one_core=False):
    exe = ctx["exe"]
    env = dict(ctx["env"])
    env.update(env_extra or {})
    cmd = [exe, "batch", "multi", ctx["cohort"], "-o", outdir, "-q", "--threads", str(threads)]
    if one_core:
        # Every thread of the process on one CPU.
        cmd = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] + cmd
    p, wall, cpu, other = timed(cmd, env)
    check_run(p, " ".join(shlex.quote(c) for c in cmd))
    lines = [ln.split("\t") for ln in p.stdout.splitlines() if ln.strip()]
    got = {ln[0]: ln for ln in lines}
    bad = [ln for ln in lines if len(ln) < 4 or ln[1] != "done"]
    missing = [i for i in ctx["ids"] if i not in got]
    seconds = [float(ln[2]) for ln in lines if len(ln) >= 3 and ln[1] == "done"]
    return {"wall": wall, "cpu": cpu, "other": other, "dir": outdir, "lines": len(lines),
            "bad": ["\t".join(ln) for ln in bad] + ["%s: no line" % i for i in missing],
            "line_seconds": seconds,
            "stages": read_stages(outdir, [i for i in ctx["ids"] if i in got])}


def busy(r):
    """' [other processes: X cpu-s]' when the rest of the machine used the cores meanwhile."""
    return " [other processes %.2f cpu-s]" % r["other"] if r["other"] > 0.05 * r["wall"] else ""


def fresh(ctx, name):
    ctx["n"] += 1
    return os.path.join(ctx["root"], "%s-%02d" % (name, ctx["n"]))


def drop(ctx, run):
    """Delete a run's outputs unless --keep (the ones the checks read are kept until the end)."""
    if not ctx["keep"]:
        shutil.rmtree(run["dir"], ignore_errors=True)


def stage_means(runs):
    """Per stage, the median over the runs of the mean over the slides; keys in report order."""
    names = []
    for r in runs:
        for st in r["stages"].values():
            names += [k for k in st if k not in names]
    means = {}
    for k in names:
        per_run = []
        for r in runs:
            vals = [st.get(k, 0.0) for st in r["stages"].values()]
            per_run.append(sum(vals) / len(vals) if vals else 0.0)
        means[k] = median(per_run)
    return names, means


def compare_outputs(a, b, ids):
    """[(id, file, same?)] for heatmap.png and tiles.csv of each id."""
    out = []
    for i in ids:
        for name in ("heatmap.png", "tiles.csv"):
            fa, fb = os.path.join(a, i, name), os.path.join(b, i, name)
            same = (os.path.isfile(fa) and os.path.isfile(fb)
                    and filecmp.cmp(fa, fb, shallow=False))
            out.append((i, name, same))
    return out


def parse_env(items):
    env = {}
    for it in items or []:
        if "=" not in it:
            raise BenchError("--env/--try-env wants VAR=VALUE, not %r" % it)
        k, v = it.split("=", 1)
        env[k] = v
    return env


def main(argv=None):
    ap = argparse.ArgumentParser(description="tileheat batch multi vs a shell loop of "
                                 "tileheat multi, and batch thread scaling, in one invocation.")
    ap.add_argument("--tileheat", default=DEFAULT_TILEHEAT,
                    help="the tileheat program (default %s)" % DEFAULT_TILEHEAT)
    ap.add_argument("--slides", default=os.path.join(os.environ.get(
        "TH_DATA", os.path.join(os.path.dirname(REPO), "shared", "data")), "slides"),
        help="folder with %s and %s (default ../shared/data/slides)" % SLIDES)
    ap.add_argument("--rows", type=int, default=24, help="cohort rows (default 24)")
    ap.add_argument("--threads", type=int, default=2,
                    help="--threads of the loop and of the batch it is compared with (default 2)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="loop and batch runs each for step 2, best counts (default 3)")
    ap.add_argument("--pairs", type=int, default=3,
                    help="batch 1-thread/2-thread pairs for step 3 (default 3)")
    ap.add_argument("--env", action="append", metavar="VAR=VALUE",
                    help="set in the environment of every tileheat run (repeatable)")
    ap.add_argument("--try-env", action="append", metavar="VAR=VALUE",
                    help="then batch at 2 threads without and with this setting, --pairs times "
                    "alternately, and report the median ratio (repeatable: one trial each)")
    ap.add_argument("--one-core", action="store_true",
                    help="step 3 also runs batch --threads 1 pinned to one CPU (taskset), every "
                    "thread included: the scaling from a 1-core baseline")
    ap.add_argument("--no-unwrap", action="store_true",
                    help="run a libtool wrapper script as it is")
    ap.add_argument("--tmpdir", default=None, help="where the temporary folder goes "
                    "(default: $TMPDIR or /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = ap.parse_args(argv)
    if args.rows < 2 or args.repeat < 1 or args.pairs < 1 or args.threads < 1:
        ap.error("--rows must be >= 2, --repeat, --pairs and --threads >= 1")
    try:
        return bench(args)
    except BenchError as exc:
        print("bench-batch: %s" % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench-batch: interrupted", file=sys.stderr)
        return 130


def bench(args):
    extra_env = parse_env(args.env)
    trials = [(t, parse_env([t])) for t in args.try_env or []]
    exe, env, desc = tileheat_command(args.tileheat, not args.no_unwrap, extra_env)
    version = check_tileheat(exe, env)
    slides = [os.path.abspath(os.path.join(args.slides, s)) for s in SLIDES]
    for s in slides:
        if not os.path.isfile(s):
            raise BenchError("slide not found: %s (give --slides DIR)" % s)
    n, T = args.rows, args.threads

    print(machine_line())
    print("%s; binary %s" % (version, desc))
    if extra_env:
        print("environment of every run: %s" % " ".join("%s=%s" % kv for kv in extra_env.items()))
    root = tempfile.mkdtemp(prefix="bench-batch-", dir=args.tmpdir)
    ctx = {"exe": exe, "env": env, "root": root, "keep": args.keep, "n": 0, "others": []}
    try:
        ctx["cohort"], ctx["ids"] = write_cohort(os.path.join(root, "cohort"), slides, n)
        print("cohort: %s, %d rows alternating %s and %s (ids %s, %s, ...)"
              % (ctx["cohort"], n, SLIDES[0], SLIDES[1], ctx["ids"][0], ctx["ids"][1]))
        print("loop:  bash -c 'while read slide,id: tileheat multi SLIDE -o DIR/ID -q "
              "--threads %d' (one process a slide)" % T)
        print("batch: tileheat batch multi COHORT -o OUTDIR -q --threads T (fresh OUTDIR each "
              "run)\n", flush=True)
        return run_all(args, ctx, trials, n, T)
    finally:
        if args.keep:
            print("\nkept: %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)


def run_all(args, ctx, trials, n, T):
    all_bad = []
    # Step 2: loop vs batch, alternately; the first pair's outputs stay for the checks.
    print("== step 2: loop vs batch at %d threads, %d runs each, alternately ==" % (T, args.repeat))
    loops, batches = [], []
    for rep in range(args.repeat):
        lp = run_loop(ctx, T, fresh(ctx, "loop-t%d" % T))
        bt = run_batch(ctx, T, fresh(ctx, "batch-t%d" % T))
        all_bad += bt["bad"]
        loops.append(lp)
        batches.append(bt)
        print("  run %d: loop %.2f s (cpu %.2f)%s, batch %.2f s (cpu %.2f)%s: %.2fx"
              % (rep + 1, lp["wall"], lp["cpu"], busy(lp), bt["wall"], bt["cpu"], busy(bt),
                 lp["wall"] / bt["wall"]), flush=True)
        if rep > 0:
            drop(ctx, lp)
            drop(ctx, bt)
    best_loop = min(r["wall"] for r in loops)
    best_batch = min(r["wall"] for r in batches)
    loop_ratio = best_loop / best_batch
    pair_loop = [a["wall"] / b["wall"] for a, b in zip(loops, batches)]

    # Step 3: batch scaling, 1 then 2 threads back to back.
    print("\n== step 3: batch at 1 and 2 threads, %d pairs back to back ==" % args.pairs)
    scal, pinned = {1: [], 2: []}, []
    for rep in range(args.pairs):
        for t in (1, 2):
            r = run_batch(ctx, t, fresh(ctx, "batch-t%d" % t))
            all_bad += r["bad"]
            scal[t].append(r)
        a, b = scal[1][-1], scal[2][-1]
        if args.one_core:
            c = run_batch(ctx, 1, fresh(ctx, "batch-core1"), one_core=True)
            all_bad += c["bad"]
            pinned.append(c)
            drop(ctx, c)
        print("  pair %d: 1 thread %.2f s (cpu %.2f)%s, 2 threads %.2f s (cpu %.2f)%s: %.2fx%s"
              % (rep + 1, a["wall"], a["cpu"], busy(a), b["wall"], b["cpu"], busy(b),
                 a["wall"] / b["wall"], "; 1 thread on one core %.2f s%s: %.2fx"
                 % (c["wall"], busy(c), c["wall"] / b["wall"]) if args.one_core else ""),
              flush=True)
        if rep > 0:
            drop(ctx, a)
            drop(ctx, b)
    ratios = [a["wall"] / b["wall"] for a, b in zip(scal[1], scal[2])]
    scaling = median(ratios)

    # Optional: environment trials on the batch at 2 threads.
    trial_res = []
    for label, tenv in trials:
        print("\n== batch at 2 threads without / with %s, %d pairs ==" % (label, args.pairs))
        rs = []
        for rep in range(args.pairs):
            a = run_batch(ctx, 2, fresh(ctx, "batch-plain"))
            b = run_batch(ctx, 2, fresh(ctx, "batch-env"), tenv)
            all_bad += a["bad"] + b["bad"]
            drop(ctx, a)
            drop(ctx, b)
            rs.append((a["wall"], b["wall"], a["cpu"], b["cpu"]))
            ctx["others"] += [a["other"], b["other"]]
            print("  pair %d: plain %.2f s (cpu %.2f)%s, with %s %.2f s (cpu %.2f)%s: %.2fx"
                  % (rep + 1, a["wall"], a["cpu"], busy(a), label, b["wall"], b["cpu"],
                     busy(b), a["wall"] / b["wall"]), flush=True)
        trial_res.append((label, rs))

    # Tables.
    print("\n" + machine_line())
    print("\n== wall time of %d slides (s); loop vs batch best of %d, scaling median of %d "
          "pairs ==" % (n, args.repeat, args.pairs))
    head = "%-28s %8s %8s %8s %9s %8s" % ("run", "best", "median", "cpu", "per slide",
                                          "slides/s")
    print(head)
    print("-" * len(head))

    def row(name, runs):
        walls = [r["wall"] for r in runs]
        best = min(walls)
        cpu = median([r["cpu"] for r in runs])
        print("%-28s %8.2f %8.2f %8.2f %9.3f %8.2f" % (name, best, median(walls), cpu,
                                                        median(walls) / n, n / best))
    row("loop multi, %d thr (step 2)" % T, loops)
    row("batch, %d thr (step 2)" % T, batches)
    row("batch, 1 thr (step 3)", scal[1])
    row("batch, 2 thr (step 3)", scal[2])
    print("cpu = user + system seconds of the process (median); per slide = median wall / %d"
          % n)

    print("\nloop / batch at %d threads: %.2fx (ratio of bests %.2f / %.2f s; per-run pairs %s)"
          % (T, loop_ratio, best_loop, best_batch, " ".join("%.2f" % x for x in pair_loop)))
    print("batch 1 -> 2 threads: median pair ratio %.2fx (range %.2f-%.2f; pairs %s)"
          % (scaling, min(ratios), max(ratios), " ".join("%.2f" % x for x in ratios)))
    cores = len(os.sched_getaffinity(0))
    t1, t2 = median([r["wall"] for r in scal[1]]), median([r["wall"] for r in scal[2]])
    c1, c2 = median([r["cpu"] for r in scal[1]]), median([r["cpu"] for r in scal[2]])
    print("  cores busy (cpu / wall): 1 thread %.2f, 2 threads %.2f; a 2-thread run cannot beat "
          "its cpu / %d = %.2f s, so with the 1-thread time %.2f s the ceiling is %.2fx"
          % (c1 / t1, c2 / t2, min(cores, 2), c2 / min(cores, 2), t1,
             t1 / (c2 / min(cores, 2))))

    if pinned:
        tp = median([r["wall"] for r in pinned])
        pr = [c["wall"] / b["wall"] for c, b in zip(pinned, scal[2])]
        print("  --threads 1 on one core (taskset): median %.2f s (cpu %.2f); "
              "one core -> 2 threads median pair ratio %.2fx (range %.2f-%.2f)"
              % (tp, median([r["cpu"] for r in pinned]), median(pr), min(pr), max(pr)))

    names, m_loop = stage_means(loops)
    names1, m1 = stage_means(scal[1])
    names2, m2 = stage_means(scal[2])
    for k in names1 + names2:
        if k not in names:
            names.append(k)
    print("\n== per-slide stage means (s), run.json performance.stages_seconds; median over "
          "the runs of the mean over the %d slides ==" % n)
    print("('thread-s': summed over the threads, not wall; in batch at 2 threads two slides run "
          "at once, one thread each)")
    head = "%-30s %10s %10s %10s %8s" % ("stage", "loop %dthr" % T, "batch 1thr", "batch 2thr",
                                         "1/2")
    print(head)
    print("-" * len(head))
    for k in names:
        a, b, c = m_loop.get(k), m1.get(k), m2.get(k)
        print("%-30s %10s %10s %10s %8s" % (
            k, "-" if a is None else "%.4f" % a, "-" if b is None else "%.4f" % b,
            "-" if c is None else "%.4f" % c, "%.2fx" % (b / c) if b and c else "-"))

    def wall_sum(m):
        return sum(v for k, v in m.items() if "thread-s" not in k)
    print("%-30s %10.4f %10.4f %10.4f" % ("sum of wall stages", wall_sum(m_loop), wall_sum(m1),
                                          wall_sum(m2)))
    print("%-30s %10.4f %10.4f %10.4f" % ("process wall / %d" % n, median(
        [r["wall"] for r in loops]) / n, t1 / n, t2 / n))
    ls1 = median([median(r["line_seconds"]) for r in scal[1]])
    ls2 = median([median(r["line_seconds"]) for r in scal[2]])
    print("%-30s %10s %10.4f %10.4f" % ("batch line seconds (median)", "-", ls1, ls2))

    # Core-seconds a slide costs outside its tile loop; what batch saves per slide over the loop.
    def tile_cpu(m):
        return sum(v for k, v in m.items() if k.startswith("tiles:"))
    lc = median([r["cpu"] for r in loops])
    ov1, ov2 = c1 / n - tile_cpu(m1), c2 / n - tile_cpu(m2)
    ovl = lc / n - tile_cpu(m_loop)
    print("\n== per-slide overhead: cpu / %d - the tile loop's thread-seconds ==" % n)
    print("batch 1 thread:  %.3f - %.3f = %.3f core-s a slide" % (c1 / n, tile_cpu(m1), ov1))
    print("batch 2 threads: %.3f - %.3f = %.3f core-s a slide" % (c2 / n, tile_cpu(m2), ov2))
    print("loop (%d threads): %.3f - %.3f = %.3f core-s a slide; batch saves %.3f core-s a slide"
          % (T, lc / n, tile_cpu(m_loop), ovl, (lc - c2) / n))

    if trial_res:
        print("\n== environment trials, batch at 2 threads (median of plain / with) ==")
        for label, rs in trial_res:
            rr = [a / b for a, b, _, _ in rs]
            print("%-28s plain %.2f s (cpu %.2f), with %.2f s (cpu %.2f): %.2fx (range %.2f-%.2f)"
                  % (label, median([r[0] for r in rs]), median([r[2] for r in rs]),
                     median([r[1] for r in rs]), median([r[3] for r in rs]), median(rr),
                     min(rr), max(rr)))

    # Step 5: correctness.
    print("\n== correctness ==")
    check_ids = [ctx["ids"][0], ctx["ids"][1]]
    ok = True
    for label, other in (("batch %d thr (step 2)" % T, batches[0]["dir"]),
                         ("batch 1 thr (step 3)", scal[1][0]["dir"]),
                         ("batch 2 thr (step 3)", scal[2][0]["dir"])):
        for i, name, same in compare_outputs(loops[0]["dir"], other, check_ids):
            ok = ok and same
            print("%-20s vs loop %-7s %-11s byte-identical: %s"
                  % (label, i, name, "ok" if same else "FAIL"))
    print("every batch line says done (%d batch runs, %d lines each): %s"
          % (len(batches) + (3 if args.one_core else 2) * args.pairs
             + 2 * args.pairs * len(trials), n,
             "ok" if not all_bad else "FAIL"))
    for b in all_bad[:10]:
        print("    %s" % b)
    ok = ok and not all_bad

    print("\n== summary ==")
    print("loop / batch at %d threads >= %.2fx:      %.2fx  %s"
          % (T, LOOP_TARGET, loop_ratio, "MET" if loop_ratio >= LOOP_TARGET else "MISSED"))
    print("batch 1 -> 2 threads >= %.2fx (median): %.2fx  %s (range %.2f-%.2f)"
          % (SCALING_TARGET, scaling, "MET" if scaling >= SCALING_TARGET else "MISSED",
             min(ratios), max(ratios)))
    print("per-slide overhead (cpu/%d - tile loop): %.3f core-s at 1 thread, %.3f at 2 threads"
          % (n, ov1, ov2))
    print("correctness: %s" % ("ok" if ok else "FAIL"))
    others = ([r["other"] for r in loops + batches + scal[1] + scal[2] + pinned]
              + ctx["others"])
    walls = sum(r["wall"] for r in loops + batches + scal[1] + scal[2] + pinned)
    if sum(others) > 0.05 * walls:
        print("WARNING: other processes used %.1f cpu-s during %.1f s of timed runs (%.0f%% of "
              "one core): the machine was not quiet, figures are pessimistic"
              % (sum(others), walls, 100 * sum(others) / walls))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
