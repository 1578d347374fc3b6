/* SPDX-License-Identifier: MIT */
/* Cohort files (placeholder). */
#include <config.h>

#include "cli-cohort.h"
#include "tap.h"

int main(void)
{
    plan(1);
    cli_err e;
    cohort c;
    ok(!cohort_load(&c, "/nonexistent", false, NULL, NULL, &e), "placeholder");
    return 0;
}
