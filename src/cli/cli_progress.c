/* Progress lines for the long commands (reembed, migrate): cli.h. */
#include <stdio.h>

#include "cli/cli.h"

void cli_progress_start(cli_progress *p, const char *what) {
    p->what = what;
    p->last = -10;
    clock_gettime(CLOCK_MONOTONIC, &p->start);
}

double cli_progress_seconds(const cli_progress *p) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - p->start.tv_sec) + (double)(now.tv_nsec - p->start.tv_nsec) / 1e9;
}

void cli_progress_show(int64_t done, int64_t total, void *ctx) {
    cli_progress *p = ctx;
    double t = cli_progress_seconds(p);
    if (done < total && t - p->last < 2.0) return;
    p->last = t;
    double rate = t > 0 ? (double)done / t : 0;
    fprintf(stderr, "%s: %lld/%lld images (%.1f %%), %.1f images/s, about %.0f s left\n", p->what, (long long)done,
            (long long)total, total ? 100.0 * (double)done / (double)total : 100.0, rate,
            rate > 0 ? (double)(total - done) / rate : 0.0);
}
