/* SPDX-License-Identifier: MIT */
/* The CLI's error helpers, signals and small file helpers. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

void cli_err_replace(cli_err *e, const char *from, const char *to)
{
    char *at = e && *from ? strstr(e->msg, from) : NULL;
    if (at) {
        char rest[sizeof(e->msg)];
        snprintf(rest, sizeof(rest), "%s", at + strlen(from));
        snprintf(at, sizeof(e->msg) - (size_t)(at - e->msg), "%s%s", to, rest);
    }
}

volatile sig_atomic_t cli_signal;

static void on_signal(int sig)
{
    if (cli_signal) {
        signal(sig, SIG_DFL); // a second ^C: stop now
        raise(sig);
    }
    cli_signal = sig;
}

void cli_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    // past `ulimit -f` a write fails with EFBIG and is reported, instead of a silent kill
    signal(SIGXFSZ, SIG_IGN);
}

bool cli_mkdirs(const char *dir, char *first, size_t size, cli_err *e)
{
    char path[4096];
    struct stat st;
    if (first && size) {
        *first = 0;
    }
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        return cli_fail(e, "%s: path too long", dir);
    }
    for (char *p = path + 1;; p++) {
        bool end = *p == 0;
        if (*p == '/' || end) {
            *p = 0;
            if (mkdir(path, 0777) == 0 && first && size && !*first) {
                snprintf(first, size, "%s", path);
            } else if (errno != EEXIST && stat(path, &st) != 0) {
                return cli_fail(e, "%s: cannot create directory: %s", path, strerror(errno));
            }
            if (end) {
                break;
            }
            *p = '/';
        }
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return cli_fail(e, "%s: not a directory", dir);
    }
    return true;
}

void cli_rmdirs(const char *dir, const char *first)
{
    char path[4096];
    size_t stop = strlen(first);
    snprintf(path, sizeof(path), "%s", dir);
    while (*first && strlen(path) >= stop && rmdir(path) == 0) {
        char *slash = strrchr(path, '/');
        if (!slash || strlen(path) == stop) {
            break;
        }
        *slash = 0;
    }
}

bool cli_dir_writable(const char *dir, cli_err *e)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/.tileheat-probe-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) {
        return cli_fail(e, "%s: cannot write in this directory: %s", dir, strerror(errno));
    }
    close(fd);
    unlink(path);
    return true;
}

char *cli_read_file(const char *path, size_t *len, cli_err *e)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        cli_fail(e, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t got = 1; buf && got > 0;) {
        if (n + 1 >= cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
        }
        got = fread(buf + n, 1, cap - n - 1, fp);
        n += got;
    }
    bool bad = !buf || ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        cli_fail(e, "%s: cannot read", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) {
        *len = n;
    }
    return buf;
}
