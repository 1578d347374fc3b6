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

static void eta(char *out, size_t size, double seconds)
{
    long left = lround(seconds);
    snprintf(out, size, "%ld:%02ld", left / 60, left % 60);
}

void cli_progress_fn(void *user, int64_t done, int64_t total)
{
    cli_progress *st = user;
    double t = cli_now();
    if (done < total && t - st->last < 0.2) {
        return;
    }
    st->last = t;
    if (done >= total && !st->slides_total) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
        return;
    }
    char b[31], left[32] = "--:--";
    if (!st->slides_total) {
        // "[#####.....] 1234/5678 tiles  45%  ETA 1:23"
        bar(b, 30, done, total);
        if (done > 0) {
            eta(left, sizeof(left), (t - st->start) / (double)done * (double)(total - done));
        }
        fprintf(stderr, "\r\033[K[%s] %lld/%lld tiles %3d%%  ETA %s", b, (long long)done,
                (long long)total, total ? (int)(100 * done / total) : 100, left);
    } else {
        // "[#####.....] 3/24 slides  812 tiles/s  ETA 0:41 | CMU-1 45/117 tiles"
        double elapsed = t - st->start;
        double slides = st->slides_done + (total ? (double)done / (double)total : 0);
        bar(b, 20, st->slides_done, st->slides_total);
        if (slides > 0) {
            eta(left, sizeof(left), elapsed / slides * (st->slides_total - slides));
        }
        fprintf(stderr, "\r\033[K[%s] %d/%d slides  %.0f tiles/s  ETA %s | %s %lld/%lld tiles", b,
                st->slides_done, st->slides_total,
                elapsed > 0 ? (double)(st->tiles_before + done) / elapsed : 0, left,
                st->current ? st->current : "", (long long)done, (long long)total);
    }
    fflush(stderr);
}
