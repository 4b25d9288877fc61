/* decode_internal.h — shared by decode.c and its large-JPEG fast path (decode_jpeg.c); not for
 * other users (the contract is decode.h). Thread-safety as decode.h: no shared state. */
#ifndef IMGSEARCH_DECODE_INTERNAL_H
#define IMGSEARCH_DECODE_INTERNAL_H

#include <stddef.h>
#include <vips/vips.h>

#include "embed/decode.h"

/* Clears libvips' error buffer (logged under IMGSEARCH_DEBUG) and writes `what` to err, naming the
 * format as damaged when status is IS_ERR_CORRUPT_IMAGE. Returns status. */
int decode_vips_fail(char *err, size_t errlen, int status, const char *what, const char *format);

/* The size × size normalised tensor (decode.h's layout) of a JPEG that libvips loaded shrunk by
 * `shrink` (2, 4 or 8) and that is 3-band 8-bit sRGB, as stored (EXIF orientation not yet
 * applied): the centre square of the short side scaled to box, its centre size × size. `loaded`
 * stays the caller's. IS_OK, IS_ERR_CORRUPT_IMAGE (pixels that do not decode), IS_ERR_NOMEM or
 * IS_ERR_INTERNAL, with a message in err. */
int decode_jpeg_tensor(VipsImage *loaded, const decode_info *info, int shrink, int box, const decode_params *p,
                       float *out, char *err, size_t errlen);

#endif
