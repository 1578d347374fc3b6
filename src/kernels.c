/* SPDX-License-Identifier: MIT */
/* STUB: src/kernels.c — to be written. */
#include <config.h>

#include "kernels.h"
