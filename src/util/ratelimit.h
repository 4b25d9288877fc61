/* ratelimit.h — a token bucket per name (an API key's name, or a client address): each name may
 * make `rate` requests a second, and up to `rate` at once after a quiet second.
 *
 * Names are kept in a hash table that forgets a name once its bucket has been full for a while;
 * the table never holds more than RATE_MAX_NAMES names (past that, names it cannot place share one
 * overflow bucket, so a flood of new addresses is limited as one). Thread-safe: one mutex. */
#ifndef IMGSEARCH_RATELIMIT_H
#define IMGSEARCH_RATELIMIT_H

#include <stdbool.h>

#define RATE_MAX_NAMES 65536

typedef struct rate_limiter rate_limiter;

/* NULL when rate <= 0 (no limit) or out of memory; rate_limiter_take(NULL, ...) always allows. */
rate_limiter *rate_limiter_new(double rate);
void rate_limiter_free(rate_limiter *r);
/* Takes one request from name's budget: true when it may go on; false with *retry_after (whole
 * seconds, at least 1) when its budget is spent. */
bool rate_limiter_take(rate_limiter *r, const char *name, int *retry_after);

#endif
