/* SPDX-License-Identifier: MIT */
/* STUB: src/report.c — to be written. */
#include <config.h>

#include "result.h"
