/* icc.h — is an embedded ICC profile plain sRGB? (decode_jpeg.c asks, to keep such JPEGs on its
 * path, and decode.c, to skip converting them: sRGB to sRGB is the identity.)
 *
 * A profile counts as sRGB when it is an RGB matrix/shaper profile whose three colorants are sRGB's
 * (IEC 61966-2.1, adapted to D50 as profiles store them) within 0.003 and whose three tone curves
 * follow sRGB's within one level in 255 at 256 points. The "sRGB IEC61966-2.1" profiles cameras
 * and editors embed (v2 and v4) pass; Adobe RGB, Display P3, a gamma 2.2 curve or a LUT-based
 * profile do not. The data is parsed by Little CMS (lcms2), hostile bytes included; anything it
 * refuses is "not sRGB", never an error.
 *
 * Thread-safe: no shared state (each call opens and closes its own profile). */
#ifndef IMGSEARCH_ICC_H
#define IMGSEARCH_ICC_H

#include <stdbool.h>
#include <stddef.h>

bool icc_is_srgb(const void *profile, size_t len);

#endif
