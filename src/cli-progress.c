/* SPDX-License-Identifier: MIT */
/* The progress bar on stderr (only ever shown on a terminal): a slide's tiles, or a cohort's
 * slides with the current slide's tiles beside them. */
#include <config.h>

#include <math.h>

#include "cli.h"

static void bar(char *out, int width, int64_t done, int64_t total)
{
    int fill = total ? (int)(width * done / total) : width;
    for (int i = 0; i < width; i++) {
        out[i] = i < fill ? '#' : '.';
    }
    out[width] = 0;
}

// An ETA is shown once it means something: after 3 s and 2 % of the work (the first tiles pay
// for warming up, so an estimate from them alone overshoots by minutes on a short job).
static bool meaningful(double elapsed, int64_t done, int64_t total)
{
    return elapsed >= 3 && done > 0 && total > 0 && (double)done >= 0.02 * (double)total;
}

static void eta(char *out, size_t size, double seconds)
{
    long left = lround(seconds);
    snprintf(out, size, "%ld:%02ld", left / 60, left % 60);
}

// "[#####.....] 1234/5678 tiles  45%  ETA 1:23"
void cli_progress_fn(void *user, int64_t done, int64_t total)
{
    cli_progress *st = user;
    double t = cli_now();
    if (done < total && t - st->last < 0.2) {
        return;
    }
    st->last = t;
    if (done >= total) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
        return;
    }
    char b[31], left[32] = "--:--";
    bar(b, 30, done, total);
    if (meaningful(t - st->start, done, total)) {
        eta(left, sizeof(left), (t - st->start) / (double)done * (double)(total - done));
    }
    fprintf(stderr, "\r\033[K[%s] %lld/%lld tiles %3d%%  ETA %s", b, (long long)done,
            (long long)total, total ? (int)(100 * done / total) : 100, left);
    fflush(stderr);
}

// "[#####.....] 3/24 slides  812 tiles/s  ETA 0:41 | cmu-03 45/117  pyr-04 12/117"
void cli_progress_cohort(double elapsed, int slides_done, int slides_total, int64_t tiles,
                         const cli_progress_slide *current, int n_current)
{
    char b[21], left[32] = "--:--";
    double slides = slides_done;
    for (int i = 0; i < n_current; i++) {
        slides += current[i].total ? (double)current[i].done / (double)current[i].total : 0;
    }
    bar(b, 20, slides_done, slides_total);
    if (meaningful(elapsed, (int64_t)(slides * 1000), (int64_t)slides_total * 1000)) {
        eta(left, sizeof(left), elapsed / slides * (slides_total - slides));
    }
    fprintf(stderr, "\r\033[K[%s] %d/%d slides  %.0f tiles/s  ETA %s |", b, slides_done,
            slides_total, elapsed > 0 ? (double)tiles / elapsed : 0, left);
    for (int i = 0; i < n_current; i++) {
        if (current[i].total > 0) {
            fprintf(stderr, " %s %lld/%lld", current[i].id, (long long)current[i].done,
                    (long long)current[i].total);
        } else {
            fprintf(stderr, " %s", current[i].id); // opening, tissue detection
        }
    }
    fflush(stderr);
}
