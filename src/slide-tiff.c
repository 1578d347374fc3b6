/* SPDX-License-Identifier: MIT */
/* STUB: src/slide-tiff.c — to be written. */
#include <config.h>

#include "slide.h"
