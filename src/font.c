/* SPDX-License-Identifier: MIT */
/* STUB: src/font.c — to be written. */
#include <config.h>

#include "render.h"
