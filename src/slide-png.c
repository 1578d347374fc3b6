/* SPDX-License-Identifier: MIT */
/* STUB: src/slide-png.c — to be written. */
#include <config.h>

#include "slide.h"
