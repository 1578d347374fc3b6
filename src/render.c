/* SPDX-License-Identifier: MIT */
/* STUB: src/render.c — to be written. */
#include <config.h>

#include "render.h"
