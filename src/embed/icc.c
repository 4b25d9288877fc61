/* icc.c — see icc.h. */
#include "embed/icc.h"

#include <lcms2.h>
#include <math.h>

/* sRGB's colorants as ICC profiles store them: Bradford-adapted to the D50 connection space. */
static const double SRGB_COLORANTS[3][3] = {
    {0.4361, 0.2225, 0.0139}, /* red */
    {0.3851, 0.7169, 0.0971}, /* green */
    {0.1431, 0.0606, 0.7141}, /* blue */
};

/* linear light back to sRGB's encoding */
static double srgb_encode(double lin) { return lin <= 0.0031308 ? lin * 12.92 : 1.055 * pow(lin, 1 / 2.4) - 0.055; }

static bool colorant_is(cmsHPROFILE p, cmsTagSignature tag, const double want[3]) {
    const cmsCIEXYZ *xyz = cmsReadTag(p, tag);
    return xyz && fabs(xyz->X - want[0]) < 0.003 && fabs(xyz->Y - want[1]) < 0.003 && fabs(xyz->Z - want[2]) < 0.003;
}

/* The curve decodes every level as sRGB's would: compared where the eye sees it, back in sRGB's
 * encoding, within one level of 255. */
static bool curve_is_srgb(cmsHPROFILE p, cmsTagSignature tag) {
    const cmsToneCurve *curve = cmsReadTag(p, tag);
    if (!curve) return false;
    for (int i = 0; i <= 255; i++) {
        double lin = cmsEvalToneCurveFloat(curve, (cmsFloat32Number)(i / 255.0));
        if (!(lin >= 0 && lin <= 1)) return false; /* NaN too */
        if (fabs(srgb_encode(lin) * 255 - i) > 1.0) return false;
    }
    return true;
}

bool icc_is_srgb(const void *profile, size_t len) {
    if (!profile || len < 132 || len > 0xFFFFFFFFu) return false;
    cmsHPROFILE p = cmsOpenProfileFromMem(profile, (cmsUInt32Number)len);
    if (!p) return false;
    bool srgb = cmsGetColorSpace(p) == cmsSigRgbData && cmsGetPCS(p) == cmsSigXYZData && cmsIsMatrixShaper(p) &&
                colorant_is(p, cmsSigRedColorantTag, SRGB_COLORANTS[0]) &&
                colorant_is(p, cmsSigGreenColorantTag, SRGB_COLORANTS[1]) &&
                colorant_is(p, cmsSigBlueColorantTag, SRGB_COLORANTS[2]) && curve_is_srgb(p, cmsSigRedTRCTag) &&
                curve_is_srgb(p, cmsSigGreenTRCTag) && curve_is_srgb(p, cmsSigBlueTRCTag);
    cmsCloseProfile(p);
    return srgb;
}
