/* SPDX-License-Identifier: MIT */
/* STUB: src/tiler.c — to be written. */
#include <config.h>

#include "tiler.h"
