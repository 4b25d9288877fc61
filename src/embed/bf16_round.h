/* bf16_round.h — rounding a spatial convolution's weights to bfloat16 so that their errors cancel
 * on natural images (internal to src/embed; the oneDNN backend uses it).
 *
 * Rounding each weight to its nearest bfloat16 leaves each with an error of up to 2^-9 of its
 * value, independently. A 3 × 3 depthwise convolution after batch-norm folding often sums nine
 * large products into a much smaller result (an edge detector on a smooth patch), so those
 * independent errors, summed over neighbouring pixels that are nearly equal, swamp the result.
 * The stem does the same to the colour channels. Since neighbouring pixels are correlated, what
 * matters is not each weight's error but the error of the output, e = Σ dᵢ xᵢ, whose expected
 * square over images is dᵀ C d with C the covariance of the taps' inputs.
 *
 * For each output channel this picks, per weight, one of its two bfloat16 neighbours (the nearest
 * to start with) and flips choices one at a time while dᵀ C d decreases (coordinate descent), with
 * a data-free prior for C: cov(tap a, tap b) = rho^(|Δrow| + |Δcol|), times rho_channel when the
 * taps read different input channels. So it needs no calibration images. Measured on the
 * packaged photos (bench/precision.py), it keeps the pooled features as close to fp32 as keeping
 * 16 bits of those weights did, at the cost of 8.
 *
 * Pure computation on caller-owned memory: thread-safe. */
#ifndef IMGSEARCH_BF16_ROUND_H
#define IMGSEARCH_BF16_ROUND_H

/* Correlation of two taps one pixel apart, and of two input channels at one pixel. */
#define BF16_ROUND_RHO 0.9
#define BF16_ROUND_RHO_CHANNEL 0.8

/* w: [cout][cin][k][k] float32 weights (finite), rounded in place to values bfloat16 holds
 * exactly, chosen as above. cin * k * k must be at most BF16_ROUND_MAX_TAPS. Returns 0, or -1
 * (w untouched) when the taps are too many. */
#define BF16_ROUND_MAX_TAPS 64
int bf16_round_smooth(float *w, int cout, int cin, int k);

/* The nearest bfloat16 to f (ties to even, as the hardware and oneDNN's reorder round), in a
 * float; a NaN stays a NaN. */
float bf16_nearest(float f);

#endif
