/* SPDX-License-Identifier: MIT */
/* STUB (parser to be written): ONNX loading. th_layer_out_size and th_model_trunk_shape are final. */
#include <config.h>

#include "model.h"

bool th_layer_out_size(const th_layer *layer, int in_h, int in_w, int *out_h, int *out_w)
{
    if (layer->kind == TH_LAYER_RELU) {
        *out_h = in_h;
        *out_w = in_w;
        return in_h > 0 && in_w > 0;
    }
    // ONNX Conv / MaxPool output size (dilated kernel extent, optional ceil for pooling).
    int64_t ext_h = (int64_t)(layer->kh - 1) * (layer->kind == TH_LAYER_CONV ? layer->dh : 1) + 1;
    int64_t ext_w = (int64_t)(layer->kw - 1) * (layer->kind == TH_LAYER_CONV ? layer->dw : 1) + 1;
    int64_t span_h = (int64_t)in_h + layer->pad_t + layer->pad_b - ext_h;
    int64_t span_w = (int64_t)in_w + layer->pad_l + layer->pad_r - ext_w;
    if (span_h < 0 || span_w < 0 || layer->sh <= 0 || layer->sw <= 0) {
        return false;
    }
    int64_t oh = span_h / layer->sh + 1;
    int64_t ow = span_w / layer->sw + 1;
    if (layer->kind == TH_LAYER_MAXPOOL && layer->ceil_mode) {
        oh = (span_h + layer->sh - 1) / layer->sh + 1;
        ow = (span_w + layer->sw - 1) / layer->sw + 1;
        // The last window must start inside the input or left padding (ONNX / PyTorch rule).
        if ((oh - 1) * layer->sh >= (int64_t)in_h + layer->pad_t) {
            oh--;
        }
        if ((ow - 1) * layer->sw >= (int64_t)in_w + layer->pad_l) {
            ow--;
        }
    }
    if (oh <= 0 || ow <= 0 || oh > INT32_MAX || ow > INT32_MAX) {
        return false;
    }
    *out_h = (int)oh;
    *out_w = (int)ow;
    return true;
}

bool th_model_trunk_shape(const th_model *model, int in_h, int in_w, int *c, int *h, int *w,
                          th_error **err)
{
    int ch = model->in_c;
    for (int i = 0; i < model->n_layers; i++) {
        const th_layer *layer = &model->layers[i];
        int oh, ow;
        if (!th_layer_out_size(layer, in_h, in_w, &oh, &ow)) {
            th_error_set(err, "node '%s': a %d×%d input leaves no output", layer->name, in_w, in_h);
            return false;
        }
        if (layer->kind == TH_LAYER_CONV) {
            if (layer->c_in != ch) {
                th_error_set(err, "node '%s': expects %d input channels, gets %d", layer->name,
                             layer->c_in, ch);
                return false;
            }
            ch = layer->c_out;
        }
        in_h = oh;
        in_w = ow;
    }
    *c = ch;
    *h = in_h;
    *w = in_w;
    return true;
}

th_model *th_model_load(const char *path, th_error **err)
{
    th_error_set(err, "not implemented");
    return NULL;
}

void th_model_free(th_model *model)
{
    (void)model;
}
