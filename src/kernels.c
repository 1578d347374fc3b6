/* SPDX-License-Identifier: MIT */
/* Reference kernels: input normalisation, direct convolution, ReLU, max pooling, global average
 * pooling, dense and softmax. Plain serial C with a fixed summation order, so a tile gives the
 * same bits on any thread. Tensors are (C, H, W) row-major float32. */
#include <config.h>

#include "kernels.h"

void th_kernel_input(const uint8_t *rgb, int h, int w, const th_model *model, float *out)
{
    // A value depends only on its byte and channel: 768 divisions instead of one a sample.
    float lut[3][256];
    for (int c = 0; c < 3; c++) {
        const float scale = model->input_scale, mean = model->input_mean[c];
        const float std = model->input_std[c];
        for (int v = 0; v < 256; v++) {
            lut[c][v] = ((float)v * scale - mean) / std;
        }
    }
    const size_t plane = (size_t)h * w;
    for (int c = 0; c < 3; c++) {
        float *o = out + (size_t)c * plane; // (h, w)
        for (size_t i = 0; i < plane; i++) {
            o[i] = lut[c][rgb[3 * i + c]];
        }
    }
}

/*
 * Output positions o in [*lo, *hi) whose input position o * stride + off lies inside [0, n),
 * clipped to [0, n_out). Computing this once per kernel tap keeps the inner loops free of
 * border checks.
 */
static void valid_range(int off, int stride, int n, int n_out, int *lo, int *hi)
{
    int a = off < 0 ? (-off + stride - 1) / stride : 0;
    int b = n - 1 - off < 0 ? 0 : (n - 1 - off) / stride + 1;
    b = TH_MIN(b, n_out);
    *lo = a;
    *hi = TH_MAX(a, b);
}

/*
 * o[i] += wv * x[i * stride] for i in [0, n). The unit-stride case runs in fixed blocks of 8,
 * then 4, so that gcc -O2 (whose cheap cost model only vectorises loops of a known trip count)
 * turns each block into SIMD; restrict tells it that o and x do not overlap. Which block an
 * element falls in depends only on the shapes, so every call gives the same bits.
 */
static void axpy_row(float *restrict o, const float *restrict x, float wv, int n, int stride)
{
    int i = 0;
    if (stride == 1) {
        for (; i + 8 <= n; i += 8) {
            for (int j = 0; j < 8; j++) {
                o[i + j] += wv * x[i + j];
            }
        }
        for (; i + 4 <= n; i += 4) {
            for (int j = 0; j < 4; j++) {
                o[i + j] += wv * x[i + j];
            }
        }
        for (; i < n; i++) {
            o[i] += wv * x[i];
        }
        return;
    }
    for (; i < n; i++) {
        o[i] += wv * x[(size_t)i * stride];
    }
}

/*
 * One output row: orow (out_w) = bias + Σ_ky Σ_kx Σ_ci w[ci, ky, kx] · in[ci, iy, ix], summed
 * in exactly that order. wco is (c_in, kh, kw), the weights of this output channel. The row
 * stays in L1 while every tap is added into it.
 */
static void conv_row(const th_layer *layer, const float *in, int h, int w, const float *wco,
                     float bias, int oy, float *orow, int out_w)
{
    const int kh = layer->kh, kw = layer->kw;
    const size_t in_plane = (size_t)h * w;
    for (int ox = 0; ox < out_w; ox++) {
        orow[ox] = bias;
    }
    for (int ky = 0; ky < kh; ky++) {
        const int iy = oy * layer->sh + ky * layer->dh - layer->pad_t;
        if (iy < 0 || iy >= h) {
            continue; // this kernel row lies in the top or bottom padding
        }
        for (int kx = 0; kx < kw; kx++) {
            const int off = kx * layer->dw - layer->pad_l;
            int ox_lo, ox_hi;
            valid_range(off, layer->sw, w, out_w, &ox_lo, &ox_hi);
            if (ox_lo == ox_hi) {
                continue;
            }
            // First valid input pixel of this tap, in channel 0.
            const float *x = in + (size_t)iy * w + (ox_lo * layer->sw + off);
            for (int ci = 0; ci < layer->c_in; ci++) {
                const float wv = wco[((size_t)ci * kh + ky) * kw + kx];
                axpy_row(orow + ox_lo, x + ci * in_plane, wv, ox_hi - ox_lo, layer->sw);
            }
        }
    }
    if (layer->relu) {
        th_kernel_relu(orow, (size_t)out_w);
    }
}

// out must not overlap in (axpy_row's restrict); the engine's ping-pong buffers never do.
void th_kernel_conv(const th_layer *layer, const float *in, int h, int w, float *out, int out_h,
                    int out_w)
{
    const size_t out_plane = (size_t)out_h * out_w;
    const size_t w_per_co = (size_t)layer->c_in * layer->kh * layer->kw;
    for (int co = 0; co < layer->c_out; co++) {
        const float *wco = layer->weight + co * w_per_co; // (c_in, kh, kw)
        float *o = out + co * out_plane;                  // (out_h, out_w)
        for (int oy = 0; oy < out_h; oy++) {
            conv_row(layer, in, h, w, wco, layer->bias[co], oy, o + (size_t)oy * out_w, out_w);
        }
    }
}

void th_kernel_relu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = x[i] > 0 ? x[i] : 0;
    }
}

void th_kernel_maxpool(const th_layer *layer, const float *in, int c, int h, int w, float *out,
                       int out_h, int out_w)
{
    for (int ch = 0; ch < c; ch++) {
        const float *x = in + (size_t)ch * h * w;    // (h, w)
        float *o = out + (size_t)ch * out_h * out_w; // (out_h, out_w)
        for (int oy = 0; oy < out_h; oy++) {
            // The window clipped to the input: padded cells are -inf and never win.
            const int y0 = oy * layer->sh - layer->pad_t;
            const int y_lo = TH_MAX(y0, 0), y_hi = TH_MIN(y0 + layer->kh, h);
            for (int ox = 0; ox < out_w; ox++) {
                const int x0 = ox * layer->sw - layer->pad_l;
                const int x_lo = TH_MAX(x0, 0), x_hi = TH_MIN(x0 + layer->kw, w);
                float m = -INFINITY;
                for (int iy = y_lo; iy < y_hi; iy++) {
                    for (int ix = x_lo; ix < x_hi; ix++) {
                        const float v = x[(size_t)iy * w + ix];
                        m = v > m ? v : m;
                    }
                }
                o[(size_t)oy * out_w + ox] = m;
            }
        }
    }
}

void th_kernel_gap(const float *in, int c, int h, int w, float *out)
{
    const size_t plane = (size_t)h * w;
    for (int ch = 0; ch < c; ch++) {
        const float *x = in + ch * plane; // (h, w)
        double sum = 0;                   // double: a 56×56 map is 3136 terms
        for (size_t i = 0; i < plane; i++) {
            sum += x[i];
        }
        out[ch] = (float)(sum / (double)plane);
    }
}

void th_kernel_dense(const float *x, int n_in, const float *weight, const float *bias, int n_out,
                     float *out)
{
    for (int i = 0; i < n_out; i++) {
        const float *row = weight + (size_t)i * n_in; // (n_in)
        double sum = bias[i];
        for (int k = 0; k < n_in; k++) {
            sum += (double)row[k] * x[k];
        }
        out[i] = (float)sum;
    }
}

void th_kernel_softmax(const float *x, int n, float *out)
{
    if (n <= 0) {
        return;
    }
    float max = x[0];
    for (int i = 1; i < n; i++) {
        max = x[i] > max ? x[i] : max;
    }
    // exp(x - max) is at most 1: no overflow however large the logits are.
    float sum = 0;
    for (int i = 0; i < n; i++) {
        out[i] = expf(x[i] - max);
        sum += out[i];
    }
    for (int i = 0; i < n; i++) {
        out[i] /= sum;
    }
}
