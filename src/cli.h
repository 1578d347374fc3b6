/* SPDX-License-Identifier: MIT */
/* What the tileheat program's modules (src/cli-*.c) share: the CLI's error type. The CLI uses the
 * public API (tileheat.h) only; its helpers return false with a message instead of exiting, and
 * only cli-main.c prints errors and chooses exit codes. */
#ifndef TH_CLI_H
#define TH_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLI_PRINTF(f, a)
#endif

/** A CLI error: one line, without the "tileheat: " prefix. */
typedef struct cli_err {
    char msg[2048];
} cli_err;

/** Set e's message (if e is not NULL) and return false. */
bool cli_fail(cli_err *e, const char *fmt, ...) CLI_PRINTF(2, 3);

/** Put "<prefix>" in front of e's message; returns false. */
bool cli_prefix(cli_err *e, const char *fmt, ...) CLI_PRINTF(2, 3);

#endif
