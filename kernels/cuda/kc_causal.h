/* kc_causal.h — inside the CUDA backend: the layout shared by the training-time causal
 * attention kernels (kc_causal_attention.cu, kc_causal_attention_bwd.cu). */
#ifndef THAW_KC_CAUSAL_H
#define THAW_KC_CAUSAL_H
#include "kernels/cuda/kc_int.h"
#include "pool/pool_log.h"

#define KC_CA_SLOTS 8   /* head-dimension values per lane: hd <= 256 */
#define KC_CA_WARPS 4   /* warps per block, one (token, head) each */

/* kc_causal_hd_notsup: the answer for a head dimension the kernels do not take (logged). */
static inline int kc_causal_hd_notsup(const char *op, int64_t hd)
{
	pool_logf("kern: %s on a GPU takes head dimensions up to %d, not %lld", op,
		  32 * KC_CA_SLOTS, (long long)hd);
	return -ENOTSUP;
}
#endif
