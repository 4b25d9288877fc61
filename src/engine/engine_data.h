/* engine_data.h — the check every image's metadata passes before it is stored (engine_add,
 * engine_set_data): a JSON object within the engine_data_limits (engine.h), made compact.
 *
 * The text's size is checked before it is parsed, so an oversized document costs no memory; then
 * it must be JSON (duplicate keys and NUL bytes refused) and an object, with at most max_keys
 * object members over all levels and at most max_depth levels of objects and arrays.
 *
 * Errors: IS_ERR_TOO_LARGE (size, keys, depth, or the compact form over max_bytes once \u escapes
 * are written), IS_ERR_INVALID (not JSON, not an object), IS_ERR_NOMEM. Pure: thread-safe; the
 * compact text is malloc'ed and belongs to the caller. Split from engine.c so that the check can
 * be exercised on its own (fuzz/fuzz_data.c). */
#ifndef IMGSEARCH_ENGINE_DATA_H
#define IMGSEARCH_ENGINE_DATA_H

#include <stddef.h>

#include "engine/engine.h"

/* text is NUL-terminated; on success *out is its compact form (JSON_COMPACT | JSON_ENSURE_ASCII). */
int engine_data_normalise(const engine_data_limits *lim, const char *text, char **out, char *err, size_t errlen);

#endif
