/* SPDX-License-Identifier: MIT */
/* STUB: src/slide-openslide.c — to be written. */
#include <config.h>

#include "slide.h"
