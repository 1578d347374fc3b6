/* SPDX-License-Identifier: MIT */
/* The CLI's error helpers. */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

bool cli_fail(cli_err *e, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
        va_end(ap);
    }
    return false;
}

bool cli_prefix(cli_err *e, const char *fmt, ...)
{
    if (e) {
        char prefix[1024], old[sizeof(e->msg)];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof(prefix), fmt, ap);
        va_end(ap);
        size_t n = strlen(prefix);
        memcpy(old, e->msg, sizeof(old));
        if (n >= sizeof(e->msg)) {
            n = sizeof(e->msg) - 1;
        }
        memcpy(e->msg, prefix, n);
        // the old message after the prefix, cut to fit
        size_t m = strnlen(old, sizeof(e->msg) - 1 - n);
        memcpy(e->msg + n, old, m);
        e->msg[n + m] = 0;
    }
    return false;
}
