/* SPDX-License-Identifier: MIT */
/* Reference kernels: plain C, serial, readable (llama2.c style). Tensors are float32, NCHW
 * without the N: (C, H, W) row-major. The fast backend's kernels are tested against these. */
#ifndef TH_KERNELS_H
#define TH_KERNELS_H

#include "model.h"

/* out (3, h, w) = (rgb * scale - mean[c]) / std[c]; rgb (h, w, 3) uint8. */
void th_kernel_input(const uint8_t *rgb, int h, int w, const th_model *model, float *out);

/* Direct convolution with bias and the layer's fused ReLU. in and out must not overlap.
 * in (c_in, h, w) -> out (c_out, out_h, out_w); out_h/out_w from th_layer_out_size. */
void th_kernel_conv(const th_layer *layer, const float *in, int h, int w, float *out, int out_h,
                    int out_w);

/* In-place max(x, 0) over n floats. */
void th_kernel_relu(float *x, size_t n);

/* Max pooling; padded cells never win. in (c, h, w) -> out (c, out_h, out_w). */
void th_kernel_maxpool(const th_layer *layer, const float *in, int c, int h, int w, float *out,
                       int out_h, int out_w);

/* Global average pooling: in (c, h, w) -> out (c). */
void th_kernel_gap(const float *in, int c, int h, int w, float *out);

/* Dense: out (n_out) = W (n_out, n_in) · x (n_in) + b (n_out). */
void th_kernel_dense(const float *x, int n_in, const float *weight, const float *bias, int n_out,
                     float *out);

/* Numerically stable softmax over n values. */
void th_kernel_softmax(const float *x, int n, float *out);

#endif
