/* SPDX-License-Identifier: MIT */
/* The full-resolution pyramidal BigTIFF overlay (placeholder until implemented). */
#include <config.h>

#include "render.h"

bool th_render_tiff(th_slide *slide, const th_result *result, const th_model *model,
                    const th_render_options *opt, const char *path, th_error **err)
{
    th_error_set(err, "--tiff is not implemented yet");
    return false;
}
