/* SPDX-License-Identifier: MIT */
/* STUB: the oneDNN fast engine (to be written). */
#include <config.h>

#include "engine.h"
