/* decode_internal.h — shared by decode.c and its large-JPEG fast path (decode_jpeg.c); not for
 * other users (the contract is decode.h). Thread-safety as decode.h: no shared state. */
#ifndef IMGSEARCH_DECODE_INTERNAL_H
#define IMGSEARCH_DECODE_INTERNAL_H

#include <stddef.h>

#include "embed/decode.h"

/* Clears libvips' error buffer (logged under IMGSEARCH_DEBUG) and writes `what` to err, naming the
 * format as damaged when status is IS_ERR_CORRUPT_IMAGE. Returns status. */
int decode_vips_fail(char *err, size_t errlen, int status, const char *what, const char *format);

/* decode_jpeg_tensor's answer for a JPEG that is not plain 3-band 8-bit sRGB (grey, CMYK, an
 * embedded ICC profile other than sRGB's): the caller takes the thumbnail path. Not an is_status
 * (those are <= 0). */
#define DECODE_JPEG_NOT_PLAIN 1

/* The size × size normalised tensor (decode.h's layout) of the JPEG in buf, decoded by libjpeg at
 * 1/shrink (1, 2, 4 or 8): the centre square of the short side scaled to box, its centre size × size,
 * EXIF orientation (info->orientation) applied. info is decode_probe's for buf. IS_OK,
 * DECODE_JPEG_NOT_PLAIN (nothing written), IS_ERR_CORRUPT_IMAGE (damaged or cut-off data, or a
 * progressive JPEG of more than DECODE_JPEG_MAX_SCANS scans), IS_ERR_NOMEM or IS_ERR_INTERNAL,
 * with a message in err. */
#define DECODE_JPEG_MAX_SCANS 256
int decode_jpeg_tensor(const void *buf, size_t len, const decode_info *info, int shrink, int box,
                       const decode_params *p, float *out, char *err, size_t errlen);

#endif
