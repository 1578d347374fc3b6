/* SPDX-License-Identifier: MIT */
/* Fuzz target: the model loader (th_model_load_from_memory: protobuf-c unpacking, the graph walk,
 * tensor decoding, validation; inputs that start like a zip or an HDF5 file reach the Keras
 * loader), then the getters and the trunk's shape on the loaded model. */
#include <config.h>

#include <stdint.h>

#include "fuzz.h"
#include "model.h"

int fuzz_onnx(const uint8_t *data, size_t size)
{
    th_error *err = NULL;
    th_model *model = th_model_load_from_memory(data, size, &err);
    if (model) {
        int w = 0, h = 0, c, fh, fw;
        th_model_get_input_size(model, &w, &h);
        for (int i = 0; i < th_model_get_class_count(model); i++) {
            th_model_get_class_name(model, i);
            th_model_is_background_class(model, i);
        }
        th_model_get_mpp(model);
        th_model_get_metadata(model, "classes");
        th_model_find_class(model, "tumor");
        th_error *shape_err = NULL;
        th_model_trunk_shape(model, w > 0 ? h : 224, w > 0 ? w : 224, &c, &fh, &fw, &shape_err);
        th_error_free(shape_err);
        th_model_free(model);
    }
    th_error_free(err);
    return 0;
}

#ifdef TH_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_onnx(data, size);
}
#endif
