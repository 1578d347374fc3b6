/* SPDX-License-Identifier: MIT */
/* A batch's bookkeeping in OUTDIR/.tileheat (the layout is in cli-state.h): per-slide locks that
 * many workers on one machine or a shared file system can take with O_EXCL, staging folders renamed
 * into place once every file is fsynced, and completion records written last. A worker killed at
 * any moment leaves no record for the slide it was on, so the next run redoes exactly that one,
 * and the folder it staged is removed by whoever takes the slide next. */
#include <config.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli-state.h"

// The folder holding `path` into dir ("." for a bare name); returns path's last component.
static const char *split_path(const char *path, char *dir, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, size, ".");
        return path;
    }
    snprintf(dir, size, "%.*s", (int)(slash - path), path);
    return slash + 1;
}

static bool sub_dir(const batch_state *st, const char *name, cli_err *e)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", st->dir, name);
    return cli_mkdirs(path, NULL, 0, e);
}

bool state_open(batch_state *st, const char *outdir, double lock_timeout, bool create, cli_err *e)
{
    memset(st, 0, sizeof(*st));
    snprintf(st->outdir, sizeof(st->outdir), "%s", outdir);
    snprintf(st->dir, sizeof(st->dir), "%s/.tileheat", outdir);
    if (gethostname(st->host, sizeof(st->host)) != 0) {
        snprintf(st->host, sizeof(st->host), "unknown");
    }
    st->lock_timeout = lock_timeout;
    if (!create) {
        return true;
    }
    return cli_mkdirs(outdir, NULL, 0, e) && cli_dir_writable(outdir, e) &&
           sub_dir(st, "locks", e) && sub_dir(st, "records", e) && sub_dir(st, "work", e);
}

bool state_slide_key(slide_key *k, const char *slide, cli_err *e)
{
    struct stat s;
    snprintf(k->slide, sizeof(k->slide), "%s", slide);
    if (stat(slide, &s) != 0) {
        k->size = k->mtime_ns = -1;
        return cli_fail(e, "%s: %s", slide, strerror(errno));
    }
    k->size = (int64_t)s.st_size;
    k->mtime_ns = (int64_t)s.st_mtim.tv_sec * 1000000000 + s.st_mtim.tv_nsec;
    return true;
}

static void path_of(const batch_state *st, const char *sub, const char *id, const char *ext,
                    char *out, size_t size)
{
    snprintf(out, size, "%s/%s/%s%s", st->dir, sub, id, ext);
}

static const char *str_item(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double num_item(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

bool state_is_done(const batch_state *st, const char *id, const slide_key *k, char *why,
                   size_t size)
{
    cJSON *rec = state_read_record(st, id);
    const cJSON *key = cJSON_GetObjectItem(rec, "key");
    char dir[4096];
    struct stat s;
    snprintf(dir, sizeof(dir), "%s/%s", st->outdir, id);
    const char *reason = !rec                                            ? "not run yet"
                         : strcmp(str_item(rec, "status"), "done") != 0  ? NULL
                         : strcmp(str_item(key, "model"), k->model) != 0 ? "the model changed"
                         : strcmp(str_item(key, "slide"), k->slide) != 0 ||
                                 num_item(key, "size") != (double)k->size ||
                                 num_item(key, "mtime_ns") != (double)k->mtime_ns
                             ? "the slide changed"
                         : strcmp(str_item(key, "options"), k->options) != 0 ? "options changed"
                         : stat(dir, &s) != 0 || !S_ISDIR(s.st_mode) ? "its output folder is gone"
                                                                     : "";
    if (!reason) {
        snprintf(why, size, "failed before: %s", str_item(rec, "error"));
    } else {
        snprintf(why, size, "%s", *reason ? reason : "done");
    }
    cJSON_Delete(rec);
    return reason && !*reason;
}

// The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), 0 if
// unknown: with the pid it tells a live lock holder from a new process that reused its pid.
static unsigned long long proc_start(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        return 0;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); // the command name may hold spaces and parentheses
    unsigned long long start = 0;
    for (int field = 2; p && *p && field < 22; p++) {
        field += *p == ' ';
        if (field == 22) {
            start = strtoull(p + 1, NULL, 10);
        }
    }
    return start;
}

typedef struct lock_info {
    char host[256];
    long pid;
    long long started; // seconds since the epoch
    unsigned long long proc_start;
} lock_info;

static bool read_lock(const char *path, lock_info *li)
{
    char *text = cli_read_file(path, NULL, NULL);
    bool ok = text && sscanf(text, "%255s %ld %lld %llu", li->host, &li->pid, &li->started,
                             &li->proc_start) == 4;
    free(text);
    return ok;
}

// A lock is stale when its process is gone (same host: no such pid, or a pid reused by a
// process that started later) or it is older than the timeout (any host).
static bool stale(const batch_state *st, const lock_info *li)
{
    if ((double)(time(NULL) - li->started) > st->lock_timeout) {
        return true;
    }
    if (strcmp(li->host, st->host) != 0) {
        return false;
    }
    if (kill((pid_t)li->pid, 0) != 0 && errno == ESRCH) {
        return true;
    }
    unsigned long long now = proc_start((pid_t)li->pid);
    return now && li->proc_start && now != li->proc_start;
}

static bool create_lock(const batch_state *st, const char *path, cli_err *e, bool *exists)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    *exists = fd < 0 && errno == EEXIST;
    if (fd < 0) {
        return *exists ? false : cli_fail(e, "%s: %s", path, strerror(errno));
    }
    char text[512];
    int n = snprintf(text, sizeof(text), "%s %ld %lld %llu\n", st->host, (long)getpid(),
                     (long long)time(NULL), proc_start(getpid()));
    bool ok = write(fd, text, (size_t)n) == n && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        unlink(path);
        return cli_fail(e, "%s: cannot write the lock", path);
    }
    return true;
}

// Take a stale lock over: rename it to a name of our own (only one worker's rename succeeds),
// check that what we moved is still the stale lock we judged, and put it back if it is not.
static void take_over(const char *path, const lock_info *judged)
{
    char mine[4200];
    lock_info moved;
    snprintf(mine, sizeof(mine), "%s.stale.%ld", path, (long)getpid());
    if (rename(path, mine) != 0) {
        return; // someone else took it first
    }
    if (read_lock(mine, &moved) && (moved.pid != judged->pid || moved.started != judged->started ||
                                    strcmp(moved.host, judged->host) != 0)) {
        if (link(mine, path) != 0) {
            // a third worker has locked it meanwhile: theirs stands, and the one we moved
            // belonged to a worker that will find its lock gone only when it unlocks
        }
    }
    unlink(mine);
}

lock_result state_lock(const batch_state *st, const char *id, char *holder, size_t size, cli_err *e)
{
    char path[4096];
    path_of(st, "locks", id, ".lock", path, sizeof(path));
    return state_lock_file(st, path, holder, size, e);
}

lock_result state_lock_file(const batch_state *st, const char *path, char *holder, size_t size,
                            cli_err *e)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        bool exists;
        if (create_lock(st, path, e, &exists)) {
            return LOCK_TAKEN;
        }
        if (!exists) {
            return LOCK_ERROR;
        }
        lock_info li;
        if (!read_lock(path, &li)) {
            // being written this instant, or empty after a crash: judge it by its age
            struct stat s;
            if (stat(path, &s) == 0 && (double)(time(NULL) - s.st_mtime) > 60) {
                unlink(path);
                continue;
            }
            snprintf(holder, size, "locked (lock file being written)");
            return LOCK_BUSY;
        }
        if (!stale(st, &li)) {
            char when[32];
            time_t t = (time_t)li.started;
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", localtime(&t));
            snprintf(holder, size, "held by %s pid %ld since %s", li.host, li.pid, when);
            return LOCK_BUSY;
        }
        take_over(path, &li);
    }
    snprintf(holder, size, "lock contended");
    return LOCK_BUSY;
}

void state_reap_lock(const batch_state *st, const char *id)
{
    char path[4096];
    lock_info li;
    path_of(st, "locks", id, ".lock", path, sizeof(path));
    if (read_lock(path, &li) && stale(st, &li)) {
        take_over(path, &li);
    }
}

void state_unlock(const batch_state *st, const char *id)
{
    char path[4096];
    path_of(st, "locks", id, ".lock", path, sizeof(path));
    unlink(path);
}

static int remove_entry(const char *path, const struct stat *s, int flag, struct FTW *ftw)
{
    (void)s;
    (void)ftw;
    if (flag == FTW_DP) {
        rmdir(path);
    } else {
        unlink(path);
    }
    return 0;
}

void state_remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void state_abort(const char *work)
{
    char dir[4096];
    state_remove_tree(work);
    split_path(work, dir, sizeof(dir));
    rmdir(dir); // work/ID, now empty
}

static bool fsync_path(const char *path, int flags, cli_err *e)
{
    int fd = open(path, flags);
    if (fd < 0 || fsync(fd) != 0) {
        int saved = errno;
        if (fd >= 0) {
            close(fd);
        }
        return cli_fail(e, "%s: cannot sync: %s", path, strerror(saved));
    }
    close(fd);
    return true;
}

void state_remove_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    size_t len = strlen(prefix);
    for (struct dirent *de; d && (de = readdir(d));) {
        if (strncmp(de->d_name, prefix, len) == 0) {
            char path[8192];
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            state_remove_tree(path);
        }
    }
    if (d) {
        closedir(d);
    }
}

void state_remove_temps(const char *path)
{
    char dir[4096], prefix[4200];
    snprintf(prefix, sizeof(prefix), "%s.tmp-", split_path(path, dir, sizeof(dir)));
    state_remove_prefixed(dir, prefix);
}

bool state_begin(const batch_state *st, const char *id, char *work, size_t size, cli_err *e)
{
    char rec[4096], dir[4096];
    path_of(st, "records", id, ".json", rec, sizeof(rec));
    if (unlink(rec) != 0 && errno != ENOENT) {
        return cli_fail(e, "%s: %s", rec, strerror(errno));
    }
    state_remove_temps(rec); // a record a killed worker was writing
    // work/ID/ holds only staging folders left by killed workers: we hold ID's lock
    path_of(st, "work", id, "", dir, sizeof(dir));
    state_remove_tree(dir);
    snprintf(work, size, "%s/%s.%ld", dir, st->host, (long)getpid());
    if (mkdir(dir, 0777) != 0 || mkdir(work, 0777) != 0) {
        return cli_fail(e, "%s: cannot create directory: %s", work, strerror(errno));
    }
    return true;
}

bool state_commit(const batch_state *st, const char *id, const char *work, cli_err *e)
{
    char path[8192], final[4096], old[4200];
    DIR *d = opendir(work);
    if (!d) {
        return cli_fail(e, "%s: %s", work, strerror(errno));
    }
    bool ok = true;
    for (struct dirent *de; ok && (de = readdir(d));) {
        if (de->d_name[0] != '.') {
            snprintf(path, sizeof(path), "%s/%s", work, de->d_name);
            ok = fsync_path(path, O_RDONLY, e);
        }
    }
    closedir(d);
    if (!ok || !fsync_path(work, O_RDONLY | O_DIRECTORY, e)) {
        return false;
    }
    // An older run's folder is moved aside first (rename cannot replace a non-empty folder).
    snprintf(final, sizeof(final), "%s/%s", st->outdir, id);
    snprintf(old, sizeof(old), "%s.old", work);
    bool had_old = rename(final, old) == 0;
    if (rename(work, final) != 0) {
        cli_fail(e, "%s: cannot rename to %s: %s", work, final, strerror(errno));
        if (had_old) {
            rename(old, final);
        }
        return false;
    }
    if (had_old) {
        state_remove_tree(old);
    }
    path_of(st, "work", id, "", old, sizeof(old));
    rmdir(old);
    return fsync_path(st->outdir, O_RDONLY | O_DIRECTORY, e);
}

bool state_write_file(const char *path, const char *text, cli_err *e)
{
    char tmp[4200], dir[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        return cli_fail(e, "%s: %s", path, strerror(errno));
    }
    size_t len = strlen(text);
    bool ok = write(fd, text, len) == (ssize_t)len && fchmod(fd, 0644) == 0 && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        cli_fail(e, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        return false;
    }
    split_path(path, dir, sizeof(dir));
    return fsync_path(dir, O_RDONLY | O_DIRECTORY, e);
}

int state_lock_table(const batch_state *st, cli_err *e)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/summary.lock", st->dir);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        cli_fail(e, "%s: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

bool state_write_record(const batch_state *st, const char *id, cJSON *rec, cli_err *e)
{
    char path[4096];
    path_of(st, "records", id, ".json", path, sizeof(path));
    char *text = cJSON_Print(rec);
    cJSON_Delete(rec);
    if (!text) {
        return cli_fail(e, "%s: out of memory", path);
    }
    bool ok = state_write_file(path, text, e);
    free(text);
    return ok;
}

cJSON *state_read_record(const batch_state *st, const char *id)
{
    char path[4096];
    path_of(st, "records", id, ".json", path, sizeof(path));
    char *text = cli_read_file(path, NULL, NULL);
    cJSON *rec = text ? cJSON_Parse(text) : NULL;
    free(text);
    return rec;
}
