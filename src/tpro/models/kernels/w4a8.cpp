// int4 weights x int8 activations for decoding on x86 CPUs with AVX512-VNNI: torch.ops.tpro.w4a8_mm.
//
// Why hand-written (see tpro/models/w4a8.py): PyTorch's CPU int4 kernel (_weight_int4pack_mm_for_cpu) multiplies
// in floating point and its cost grows with rows (the embedded model's linears, 2 threads, AVX-512 EPYC: 17 ms for
// one row, 52 for eight), so speculative trees of 2-8 tokens cost 1.2-3x a token. Integer dot products (VNNI)
// do 64 multiply-adds an instruction; this kernel reads each weight tile once for up to 8 rows. A one-row pass
// runs at the memory bandwidth: 7.2 ms for the embedded model's 169 linears on a 2-core Zen 5 EPYC, against 9.4
// for the previous layout of separate tile and scale streams (43 vs 33 GB/s; a plain sum reads 45 GB/s). No wheel of
// PyTorch or torchao ships such a kernel for x86 (torchao's da8w4 CPU op is not in its PyPI wheel).
//
// y[m, n] = sum_g  s[n, g] * xs[m, g] * dot(q[n, g, :], xq[m, g, :])  +  z[n, g] * xsum[m, g]
//   q in 0..15 (the int4 codes), w = q * s + z per group of 32 weights (z = zero - 8 * scale in the int4
//   kernel's convention); x quantised per row and group of 32: xq = round(x / xs) in -127..127, xs = max|x| / 127;
//   xsum = xs * sum(xq), so y is exactly w . (xs * xq): the dequantised weights times the quantised activations.
// Each row is computed alone in a fixed order (integer sums are exact), so a row's result does not depend on the
// other rows of the call: a token's logits are the same alone, in a batch or inside a speculative tree.
//
// Layouts (made by tpro.models.w4a8.pack; N padded to a multiple of 64, the op writes the first n outputs):
// codes uint8 [N/64][K/8][64][4]: super-tile of 64 outputs (4 tiles of 16), block of 8 inputs, output lane l,
// byte b = q[n_l, 8i+b] | q[n_l, 8i+4+b] << 4 (low nibbles: inputs 0-3 of the block, high: 4-7);
// sz bf16 [N/64][K/32][4][2][16]: per group and tile, its 16 scales then its 16 zeros (one 64-byte load).
// Each thread walks its super-tiles in one sequential stream of codes and one of scales, which the hardware
// prefetcher (and the software prefetch below) keeps ahead of the multiply-adds.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t GROUP = 32;
constexpr int64_t PF = 16;  // software prefetch distance in blocks of 8 inputs (4 KiB ahead; 8 and 16 measured alike)

inline __m512 bf16_lo(__m512i v) {  // bf16 lanes 0-15 -> fp32
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(v)), 16));
}
inline __m512 bf16_hi(__m512i v) {  // bf16 lanes 16-31 -> fp32
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(v, 1)), 16));
}

// MB rows x T tiles (of 16 outputs): tiles t0..t0+T-1 of super-tile st. Registers: MB*T int32 dot accumulators
// (one group) + MB*T fp32 output accumulators, the activations' broadcasts shared by the T tiles.
template <int MB, int T>
void tile_rows(const int8_t* xq, const float* xs, const float* xsum, int64_t K, const uint8_t* codes,
               const uint16_t* sz, float* y, int64_t ldy, int64_t st, int t0) {
  const int64_t G = K / GROUP, B = K / 8;
  const __m512i low = _mm512_set1_epi8(0x0F);
  const uint8_t* cbase = codes + st * B * 256;
  const uint16_t* sbase = sz + st * G * 128;
  __m512 acc[T][MB];
  for (int t = 0; t < T; ++t)
    for (int m = 0; m < MB; ++m) acc[t][m] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m512i dot[T][MB];
    for (int t = 0; t < T; ++t)
      for (int m = 0; m < MB; ++m) dot[t][m] = _mm512_setzero_si512();
    for (int64_t i = g * 4; i < g * 4 + 4; ++i) {
      const uint8_t* cb = cbase + i * 256 + t0 * 64;
      for (int t = 0; t < T; ++t) _mm_prefetch((const char*)(cb + PF * 256 + t * 64), _MM_HINT_T0);
      __m512i xb[MB][2];
      for (int m = 0; m < MB; ++m) {
        const int32_t* xm = (const int32_t*)(xq + m * K + 8 * i);
        xb[m][0] = _mm512_set1_epi32(xm[0]);
        xb[m][1] = _mm512_set1_epi32(xm[1]);
      }
      for (int t = 0; t < T; ++t) {
        const __m512i v = _mm512_loadu_si512(cb + t * 64);
        const __m512i lo = _mm512_and_si512(v, low);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
        for (int m = 0; m < MB; ++m) {
          dot[t][m] = _mm512_dpbusd_epi32(dot[t][m], lo, xb[m][0]);
          dot[t][m] = _mm512_dpbusd_epi32(dot[t][m], hi, xb[m][1]);
        }
      }
    }
    const uint16_t* sg = sbase + g * 128 + t0 * 32;
    _mm_prefetch((const char*)(sg + 4 * 128), _MM_HINT_T0);
    for (int t = 0; t < T; ++t) {
      const __m512i v = _mm512_loadu_si512(sg + t * 32);
      const __m512 s = bf16_lo(v), z = bf16_hi(v);
      for (int m = 0; m < MB; ++m) {
        const __m512 d = _mm512_mul_ps(_mm512_cvtepi32_ps(dot[t][m]), _mm512_set1_ps(xs[m * G + g]));
        acc[t][m] = _mm512_fmadd_ps(s, d, acc[t][m]);
        acc[t][m] = _mm512_fmadd_ps(z, _mm512_set1_ps(xsum[m * G + g]), acc[t][m]);
      }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int m = 0; m < MB; ++m) _mm512_storeu_ps(y + m * ldy + st * 64 + (t0 + t) * 16, acc[t][m]);
}

// All super-tiles for MB rows, split over PyTorch's threads. One or two rows: the 4 tiles in one pass; 3-6 rows:
// two passes of 2 tiles (registers), 7-8: four of 1; a super-tile's bytes (<= 200 KB for K = 4864) stay in L2
// between its passes, so each weight is read from memory once.
template <int MB>
void all_tiles(const int8_t* xq, const float* xs, const float* xsum, int64_t K, int64_t NS, const uint8_t* codes,
               const uint16_t* sz, float* y, int64_t ldy) {
  at::parallel_for(0, NS, 1, [&](int64_t b, int64_t e) {
    for (int64_t st = b; st < e; ++st) {
      if constexpr (MB <= 2) {
        tile_rows<MB, 4>(xq, xs, xsum, K, codes, sz, y, ldy, st, 0);
      } else if constexpr (MB <= 6) {
        tile_rows<MB, 2>(xq, xs, xsum, K, codes, sz, y, ldy, st, 0);
        tile_rows<MB, 2>(xq, xs, xsum, K, codes, sz, y, ldy, st, 2);
      } else {
        for (int t = 0; t < 4; ++t) tile_rows<MB, 1>(xq, xs, xsum, K, codes, sz, y, ldy, st, t);
      }
    }
  });
}

void rows_block(int64_t mb, const int8_t* xq, const float* xs, const float* xsum, int64_t K, int64_t NS,
                const uint8_t* codes, const uint16_t* sz, float* y, int64_t ldy) {
  switch (mb) {
    case 1: return all_tiles<1>(xq, xs, xsum, K, NS, codes, sz, y, ldy);
    case 2: return all_tiles<2>(xq, xs, xsum, K, NS, codes, sz, y, ldy);
    case 3: return all_tiles<3>(xq, xs, xsum, K, NS, codes, sz, y, ldy);
    case 4: return all_tiles<4>(xq, xs, xsum, K, NS, codes, sz, y, ldy);
    case 5: return all_tiles<5>(xq, xs, xsum, K, NS, codes, sz, y, ldy);
    case 6: return all_tiles<6>(xq, xs, xsum, K, NS, codes, sz, y, ldy);
    case 7: return all_tiles<7>(xq, xs, xsum, K, NS, codes, sz, y, ldy);
    default: return all_tiles<8>(xq, xs, xsum, K, NS, codes, sz, y, ldy);
  }
}

// One row's group of 32 activations (fp32) -> 32 int8 codes, their scale, and the sum of the quantised values
// (scale * sum of codes: the zero term must see the same activations as the codes' term, or the two large terms
// of an offset grid no longer cancel; with the exact sum the error was ~3x larger on Gaussian data).
// Round half to even (the default rounding mode), as torch.round in the reference.
inline void quantize_group(__m512 a, __m512 b, int8_t* q, float* scale, float* sum) {
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
  *scale = amax > 0.f ? amax / 127.f : 1.f;
  const __m512 inv = _mm512_set1_ps(1.f / *scale);
  const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, inv)), qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, inv));
  _mm_storeu_si128((__m128i*)q, _mm512_cvtsepi32_epi8(qa));
  _mm_storeu_si128((__m128i*)(q + 16), _mm512_cvtsepi32_epi8(qb));
  *sum = *scale * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
}

inline __m256i to_bf16x16(__m512 f) {  // round to nearest even (finite values), as torch's float -> bfloat16
  const __m512i u = _mm512_castps_si512(f);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

}  // namespace

// x [M, K] bf16 or fp32 -> [M, n] in x's dtype.
torch::Tensor w4a8_mm(const torch::Tensor& x_in, const torch::Tensor& codes, const torch::Tensor& sz, int64_t n) {
  TORCH_CHECK(x_in.dim() == 2, "w4a8_mm: x must be 2-D [M, K]");
  TORCH_CHECK(x_in.scalar_type() == torch::kFloat32 || x_in.scalar_type() == torch::kBFloat16,
              "w4a8_mm: x must be float32 or bfloat16");
  TORCH_CHECK(codes.scalar_type() == torch::kUInt8 && codes.dim() == 4 && codes.size(2) == 64 && codes.size(3) == 4,
              "w4a8_mm: codes must be uint8 [N/64, K/8, 64, 4]");
  TORCH_CHECK(sz.scalar_type() == torch::kBFloat16 && sz.dim() == 5 && sz.size(0) == codes.size(0),
              "w4a8_mm: sz must be bfloat16 [N/64, K/32, 4, 2, 16]");
  const int64_t M = x_in.size(0), K = x_in.size(1), NS = codes.size(0), NP = NS * 64;
  TORCH_CHECK(K % GROUP == 0 && codes.size(1) * 8 == K && sz.size(1) * GROUP == K, "w4a8_mm: K mismatch");
  TORCH_CHECK(n > NP - 64 && n <= NP, "w4a8_mm: n must be within the last super-tile");
  TORCH_CHECK(codes.is_contiguous() && sz.is_contiguous(), "w4a8_mm: weights must be contiguous");
  const torch::Tensor x = x_in.contiguous();
  const int64_t G = K / GROUP;
  std::vector<int8_t> xq(M * K);
  std::vector<float> xs(M * G), xsum(M * G);
  if (x.scalar_type() == torch::kBFloat16) {
    const uint16_t* xp = (const uint16_t*)x.data_ptr();
    for (int64_t r = 0; r < M * G; ++r) {
      const __m512i v = _mm512_loadu_si512(xp + r * GROUP);
      quantize_group(bf16_lo(v), bf16_hi(v), xq.data() + r * GROUP, &xs[r], &xsum[r]);
    }
  } else {
    const float* xp = x.data_ptr<float>();
    for (int64_t r = 0; r < M * G; ++r)
      quantize_group(_mm512_loadu_ps(xp + r * GROUP), _mm512_loadu_ps(xp + r * GROUP + 16), xq.data() + r * GROUP,
                     &xs[r], &xsum[r]);
  }
  const bool bf16 = x.scalar_type() == torch::kBFloat16;
  const bool direct = !bf16 && n == NP;  // fp32 out, no padding: write the result in place
  torch::Tensor yf =
      direct ? torch::empty({M, n}, x.options()) : torch::empty({M, NP}, x.options().dtype(torch::kFloat32));
  float* yp = yf.data_ptr<float>();
  const uint8_t* cp = codes.data_ptr<uint8_t>();
  const uint16_t* sp = (const uint16_t*)sz.data_ptr();
  for (int64_t m0 = 0; m0 < M; m0 += 8)
    rows_block(std::min<int64_t>(8, M - m0), xq.data() + m0 * K, xs.data() + m0 * G, xsum.data() + m0 * G, K, NS, cp,
               sp, yp + m0 * NP, NP);
  if (direct) return yf;
  torch::Tensor out = torch::empty({M, n}, x.options());
  if (!bf16) return out.copy_(yf.narrow(1, 0, n));
  uint16_t* op = (uint16_t*)out.data_ptr();
  for (int64_t m = 0; m < M; ++m) {
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
      _mm256_storeu_si256((__m256i*)(op + m * n + j), to_bf16x16(_mm512_loadu_ps(yp + m * NP + j)));
    if (j < n) {
      alignas(32) uint16_t tail[16];
      _mm256_store_si256((__m256i*)tail, to_bf16x16(_mm512_loadu_ps(yp + m * NP + j)));
      __builtin_memcpy(op + m * n + j, tail, (n - j) * sizeof(uint16_t));
    }
  }
  return out;
}

TORCH_LIBRARY(tpro, m) { m.def("w4a8_mm(Tensor x, Tensor codes, Tensor sz, int n) -> Tensor"); }
TORCH_LIBRARY_IMPL(tpro, CPU, m) { m.impl("w4a8_mm", &w4a8_mm); }
