/* SPDX-License-Identifier: MIT */
/* STUB: src/slide.c — to be written. */
#include <config.h>

#include "slide.h"

th_slide *th_slide_open(const char *path, th_error **err) { th_error_set(err, "not implemented"); return NULL; }
void th_slide_close(th_slide *slide) { (void)slide; }
