/* SPDX-License-Identifier: MIT */
/* `tileheat calibrate SLIDE|COHORT... -o FILE.json`: int8's activation ranges measured once for a
 * cohort, on a sample of tiles spread evenly over its slides (th_calibration_*). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "cli-cohort.h"

// The slides to sample: each argument that opens as a slide, else the rows of the cohort it
// names (a CSV or TSV, a list, a directory: as batch reads it), with their µm/px and ROI.
static bool gather(const cli_opts *o, cohort *all, cli_err *e)
{
    memset(all, 0, sizeof(*all));
    for (int i = 0; i < o->n_inputs; i++) {
        const char *arg = o->inputs[i];
        cohort c = {0};
        if (cohort_probe_slide(arg, NULL)) {
            c.rows = calloc(1, sizeof(cohort_row));
            if (!c.rows || !(c.rows[0].slide = strdup(arg))) {
                cohort_free(&c);
                cohort_free(all);
                return cli_fail(e, "out of memory");
            }
            c.n = 1;
        } else if (!cohort_load(&c, arg, false, cohort_probe_slide, NULL, e)) {
            cohort_free(all);
            return false;
        }
        cohort_row *rows = realloc(all->rows, sizeof(cohort_row) * (size_t)(all->n + c.n));
        if (!rows) {
            cohort_free(&c);
            cohort_free(all);
            return cli_fail(e, "out of memory");
        }
        all->rows = rows;
        memcpy(all->rows + all->n, c.rows, sizeof(cohort_row) * (size_t)c.n);
        all->n += c.n;
        free(c.rows); // the rows' strings now belong to `all`
    }
    if (all->n == 0) {
        return cli_fail(e, "no slides to calibrate on");
    }
    return true;
}

int cli_calibrate(cli_opts *o, cli_err *e)
{
    cohort all = {0};
    th_model *model = NULL;
    th_calibration *cal = NULL;
    th_error *err = NULL;
    bool ok = false;
    if (!(model = cli_load_model(o, e)) || !gather(o, &all, e)) {
        goto out;
    }
    if (!(cal = th_calibration_new(model, &o->run, o->sample, &err))) {
        cli_fail(e, "%s", th_error_message(err));
        goto out;
    }
    // Slide i gives its share of the sample (at least one tile); of several slides, one that
    // cannot be read is left out with a warning, so that one bad file does not stop a cohort's
    // calibration.
    int used = 0;
    for (int i = 0; i < all.n && !cli_signal; i++) {
        const cohort_row *row = &all.rows[i];
        th_run_options opt = o->run;
        opt.slide_mpp = row->mpp > 0 ? row->mpp : opt.slide_mpp;
        if (row->has_roi) {
            opt.roi_x = row->roi[0];
            opt.roi_y = row->roi[1];
            opt.roi_w = row->roi[2];
            opt.roi_h = row->roi[3];
        }
        int share = (int)((int64_t)o->sample * (i + 1) / all.n - (int64_t)o->sample * i / all.n);
        if (!th_calibration_add(cal, row->slide, &opt, share > 0 ? share : 1, &err)) {
            if (all.n == 1) {
                cli_fail(e, "%s", th_error_message(err));
                goto out;
            }
            fprintf(stderr, "tileheat: warning: %s (not in the sample)\n", th_error_message(err));
            th_error_free(err);
            err = NULL;
            continue;
        }
        used++;
    }
    if (cli_signal) {
        goto out;
    }
    if (!th_calibration_finish(cal, &err) || !th_calibration_write(cal, o->out_dir, &err)) {
        cli_fail(e, "%s", th_error_message(err));
        goto out;
    }
    int tiles;
    double pct, agree, corr;
    th_calibration_get_check(cal, &tiles, &pct, &agree, &corr);
    if (!o->quiet) {
        printf("%s: int8 ranges of %s from %d tiles of %d slide%s\n"
               "int8 against float32 on them: percentages within %.3f points, top class the "
               "same on %.1f %%, CAM correlation >= %.4f\n",
               o->out_dir, o->model_path, tiles, used, used == 1 ? "" : "s", pct, 100 * agree,
               corr);
    }
    const char *warning = th_calibration_get_warning(cal);
    if (warning) {
        fprintf(stderr, "tileheat: warning: %s\n", warning);
    }
    ok = true;
out:
    th_error_free(err);
    th_calibration_free(cal);
    cohort_free(&all);
    th_model_free(model);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
