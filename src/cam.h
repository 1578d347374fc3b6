/* SPDX-License-Identifier: MIT */
/* Class activation maps: CAM_c(y,x) = Σ_k W[c,k]·A_k(y,x) over the feature map A that feeds
 * global average pooling, W the dense weights; the dense bias is left out. Plus the slide-wide
 * display normalisation and bilinear sampling across tile borders. */
#ifndef TH_CAM_H
#define TH_CAM_H

#include "result.h"

/* feat (c, h, w), weight (n_classes, c) -> cam (n_classes, h, w). */
void th_cam_compute(const float *feat, int c, int h, int w, const float *weight, int n_classes,
                    float *cam);

/* Display range of class cls over every CAM cell of the slide.
 * TH_NORM_PERCENTILE: lo = 0, hi = that percentile of the values clipped at 0 (1 if all ≤ 0).
 * TH_NORM_RAW: lo, hi = smallest and largest raw value over the classes in `classes`. */
bool th_cam_range(const th_result *result, th_norm norm, double percentile, const int *classes,
                  int n_classes, float *lo, float *hi, th_error **err);

/* Bilinear sample of the raw CAM of class cls at level-0 point (x, y) (pixel centres at +0.5),
 * interpolating between cell centres across tile borders; cells of tiles that were not run are
 * left out of the weights. False where no tile covers the point (partial edges). */
bool th_cam_sample(const th_result *result, int cls, double x, double y, float *value);

#endif
