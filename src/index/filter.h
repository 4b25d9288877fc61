/* filter.h — the metadata filter language, shared by search, query and listing.
 *
 * A filter is a JSON object, MongoDB-style:
 *   {"breed": "labrador"}                          equality (the original API's form)
 *   {"age": {"$gte": 2, "$lt": 10}}                operators on a field
 *   {"owner.city": {"$in": ["Oslo", "Bergen"]}}    nested keys by dot path
 *   {"$or": [{"breed": "pug"}, {"$not": {"age": {"$gt": 12}}}]}
 * Operators: $eq $ne $gt $gte $lt $lte $in $nin $exists; combinators $and $or $not (also $not on
 * a field: {"age": {"$not": {"$gt": 5}}}). Several keys in one object all have to match.
 *
 * Semantics: equality is deep JSON equality, numbers compared by value (1 == 1.0). Ordering
 * operators compare numbers with numbers and strings with strings (bytewise UTF-8, i.e. code
 * point order); any other pairing does not match. A field holding an array matches $eq, $in and
 * the ordering operators when any element does ({"tags": "dog"} finds {"tags": ["dog", "cat"]}),
 * or when the whole array equals the operand. $ne and $nin are the negations of $eq and $in, so a
 * missing field matches them. $exists tests presence (a null value is present).
 *
 * Ownership and threads: filter_compile returns a tree the caller frees with filter_free; the
 * filter keeps no reference to the JSON it was compiled from. filter_match only reads, so one
 * compiled filter may be evaluated from any number of threads at once. */
#ifndef IMGSEARCH_FILTER_H
#define IMGSEARCH_FILTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct filter filter;

/* Compiles a filter. NULL or an empty object compiles to the filter that matches everything.
 * Errors: IS_ERR_INVALID with a message naming the problem and where it is, e.g.
 *   "filter.age.$gt: needs a number or a string, not an array". */
int filter_compile(const json_t *spec, filter **out, char *err, size_t errlen);

/* Parses text as JSON then compiles it; malformed JSON is reported with its line and column, a
 * duplicate key is refused, and text over FILTER_MAX_BYTES is refused (IS_ERR_TOO_LARGE) unparsed. */
#define FILTER_MAX_BYTES (1 << 20)
int filter_compile_text(const char *text, size_t len, filter **out, char *err, size_t errlen);

void filter_free(filter *f);

/* Does the metadata document match? A NULL document is treated as the empty object. */
bool filter_match(const filter *f, const json_t *doc);

/* True for the filter that matches everything (callers skip evaluation). */
bool filter_is_all(const filter *f);

#endif
