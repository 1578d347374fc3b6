/* SPDX-License-Identifier: MIT */
/* STUB: src/model.c — to be written. */
#include <config.h>

#include "model.h"

th_model *th_model_load(const char *path, th_error **err) { th_error_set(err, "not implemented"); return NULL; }
void th_model_free(th_model *m) { (void)m; }
