/* SPDX-License-Identifier: MIT */
/* Placeholder until implemented. */
#include <config.h>

#include "tap.h"

int main(void)
{
    skip_all("not implemented yet");
    return 0;
}
