/* SPDX-License-Identifier: MIT */
/* GeoJSON and .npy exports (placeholder until implemented). */
#include <config.h>

#include "result.h"

bool th_export_geojson(const th_result *result, const th_model *model, const char *path,
                       th_error **err)
{
    th_error_set(err, "--geojson is not implemented yet");
    return false;
}

bool th_export_npy(const th_result *result, const char *cam_path, const char *probs_path,
                   th_error **err)
{
    th_error_set(err, "--raw is not implemented yet");
    return false;
}
