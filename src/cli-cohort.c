/* SPDX-License-Identifier: MIT */
/* Cohort files (placeholder: being written). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "cli-cohort.h"

bool cohort_load(cohort *c, const char *path, bool single, cohort_probe_fn probe, void *user,
                 cli_err *e)
{
    memset(c, 0, sizeof(*c));
    return cli_fail(e, "%s: cohort files are not read yet", path);
}

void cohort_free(cohort *c)
{
    for (int i = 0; i < c->n; i++) {
        free(c->rows[i].id);
        free(c->rows[i].slide);
        free(c->rows[i].class_name);
    }
    free(c->rows);
    memset(c, 0, sizeof(*c));
}
