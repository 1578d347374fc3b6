/* SPDX-License-Identifier: MIT */
/* STUB: src/cam.c — to be written. */
#include <config.h>

#include "cam.h"
