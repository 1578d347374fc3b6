/* SPDX-License-Identifier: MIT */
/* STUB CLI */
#include <stdio.h>
#include "tileheat.h"
int main(void) { return 0; }
