/* SPDX-License-Identifier: MIT */
/* STUB: src/engine.c — to be written. */
#include <config.h>

#include "engine.h"
