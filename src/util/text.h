/* text.h — bytes that came from outside, made safe to store, show as JSON and write to a log.
 *
 * Pure functions over caller-owned buffers; thread-safe. Strings returned by the *_dup functions
 * are malloc'ed and belong to the caller (NULL only when memory runs out). */
#ifndef IMGSEARCH_TEXT_H
#define IMGSEARCH_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#define TEXT_NAME_MAX 255 /* bytes of a stored image name, at most */

/* Is s[0..len) well-formed UTF-8 (no overlong forms, surrogates or code points over U+10FFFF)? */
bool text_utf8_valid(const char *s, size_t len);

/* A copy of s[0..len) that is valid UTF-8: each ill-formed sequence becomes U+FFFD. */
char *text_utf8_dup(const char *s, size_t len);

/* The name an uploaded file is stored under: its last path component (after '/' or '\'), valid
 * UTF-8 (ill-formed bytes become U+FFFD), control characters replaced by '_', at most
 * TEXT_NAME_MAX bytes (cut at a character boundary); fallback when nothing is left. */
char *text_file_name_dup(const char *raw, const char *fallback);

/* Writes s into out (always terminated) with every byte outside printable ASCII, and '\' and '"',
 * escaped as \xNN, so that a client cannot forge or break log lines. Long input is cut with "...". */
void text_log_escape(const char *s, char *out, size_t outlen);

#endif
