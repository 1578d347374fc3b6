/* SPDX-License-Identifier: MIT */
/* Tissue detection (placeholder until implemented). */
#include <config.h>

#include "tissue.h"

th_tissue *th_tissue_detect(th_slide *slide, double mpp0, th_error **err)
{
    th_error_set(err, "tissue detection is not implemented yet");
    return NULL;
}

void th_tissue_free(th_tissue *tissue)
{
    if (tissue) {
        th_free(tissue->mask);
        th_free(tissue);
    }
}

double th_tissue_fraction(const th_tissue *tissue, double x, double y, double w, double h)
{
    return 1.0;
}

bool th_tissue_write_png(const th_tissue *tissue, const char *path, th_error **err)
{
    th_error_set(err, "tissue detection is not implemented yet");
    return false;
}
