/* SPDX-License-Identifier: MIT */
/* STUB: src/run.c — to be written. */
#include <config.h>

#include "result.h"
