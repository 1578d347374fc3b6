/* SPDX-License-Identifier: MIT */
/* th_error: a heap-allocated one-line message. The first error set sticks; callers add context
 * in front with th_error_prefix. */
#include <config.h>

#define TH_ALLOW_RAW
#include "th-private.h"

struct th_error {
    char *msg;
};

static char *vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return NULL;
    }
    char *s = malloc((size_t)n + 1); // th-allow
    if (s) {
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    }
    return s;
}

// Used when even the error cannot be allocated: a static, never-freed error.
static th_error oom_error = {(char *)"out of memory"};

void th_error_set(th_error **err, const char *fmt, ...)
{
    if (!err || *err) {
        return;
    }
    th_error *e = malloc(sizeof(*e)); // th-allow
    va_list ap;
    va_start(ap, fmt);
    char *msg = e ? vformat(fmt, ap) : NULL;
    va_end(ap);
    if (!e || !msg) {
        free(e);
        *err = &oom_error;
        return;
    }
    e->msg = msg;
    *err = e;
}

void th_error_prefix(th_error **err, const char *fmt, ...)
{
    if (!err || !*err || *err == &oom_error) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *pre = vformat(fmt, ap);
    va_end(ap);
    if (!pre) {
        return;
    }
    size_t a = strlen(pre), b = strlen((*err)->msg);
    char *msg = malloc(a + b + 1); // th-allow
    if (msg) {
        memcpy(msg, pre, a);
        memcpy(msg + a, (*err)->msg, b + 1);
        free((*err)->msg);
        (*err)->msg = msg;
    }
    free(pre);
}

void th_error_propagate(th_error **dst, th_error **src)
{
    if (!src || !*src) {
        return;
    }
    if (dst && !*dst) {
        *dst = *src;
    } else {
        th_error_free(*src);
    }
    *src = NULL;
}

const char *th_error_message(const th_error *err)
{
    return err ? err->msg : "no error";
}

void th_error_free(th_error *err)
{
    if (err && err != &oom_error) {
        free(err->msg);
        free(err);
    }
}
