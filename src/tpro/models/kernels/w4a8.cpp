// int4 weights x int8 activations for decoding on x86 CPUs with AVX512-VNNI: torch.ops.tpro.w4a8_mm.
//
// Why hand-written (see tpro/models/w4a8.py): PyTorch's CPU int4 kernel (_weight_int4pack_mm_for_cpu) multiplies
// in floating point and its cost grows with rows (the embedded model's linears, 2 threads, AVX-512 EPYC: 17 ms for
// one row, 52 for eight), so speculative trees of 2-8 tokens cost 1.2-3x a token. Integer dot products (VNNI)
// do 64 multiply-adds an instruction; this kernel reads each weight tile once for up to 8 rows. No wheel of
// PyTorch or torchao ships such a kernel for x86 (torchao's da8w4 CPU op is not in its PyPI wheel).
//
// y[m, n] = sum_g  s[n, g] * xs[m, g] * dot(q[n, g, :], xq[m, g, :])  +  z[n, g] * xsum[m, g]
//   q in 0..15 (the int4 codes), w = q * s + z per group of 32 weights (z = zero - 8 * scale in the int4
//   kernel's convention); x quantised per row and group of 32: xq = round(x / xs) in -127..127, xs = max|x| / 127;
//   xsum = xs * sum(xq), so y is exactly w . (xs * xq): the dequantised weights times the quantised activations.
// Each row is computed alone in a fixed order (integer sums are exact), so a row's result does not depend on the
// other rows of the call: a token's logits are the same alone, in a batch or inside a speculative tree.
//
// Layouts (made by tpro.models.w4a8.pack): codes uint8 [N/16][K/8][16][4]: tile of 16 outputs, block of 8 inputs,
// lane l, byte b = q[n_l, 8i+b] | q[n_l, 8i+4+b] << 4 (low nibbles: inputs 0-3 of the block, high: 4-7);
// scale, zero bf16 [N/16][K/32][16].
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t GROUP = 32;

inline __m512 load_bf16x16(const uint16_t* p) {  // 16 bf16 -> 16 fp32 (exact)
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}

// MB rows x T tiles of 16 outputs. Registers: MB*T int32 dot accumulators + MB*T fp32 output accumulators.
template <int MB, int T>
void tile_rows(const int8_t* xq, const float* xs, const float* xsum, int64_t K, int64_t N, const uint8_t* codes,
               const uint16_t* scale, const uint16_t* zero, float* y, int64_t tile0) {
  const int64_t G = K / GROUP, B = K / 8;
  const __m512i low = _mm512_set1_epi8(0x0F);
  __m512 acc[T][MB];
  for (int t = 0; t < T; ++t)
    for (int m = 0; m < MB; ++m) acc[t][m] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m512i dot[T][MB];
    for (int t = 0; t < T; ++t)
      for (int m = 0; m < MB; ++m) dot[t][m] = _mm512_setzero_si512();
    for (int64_t i = g * 4; i < g * 4 + 4; ++i) {  // 4 blocks of 8 inputs = one group
      for (int t = 0; t < T; ++t) {
        const __m512i v = _mm512_loadu_si512(codes + ((tile0 + t) * B + i) * 64);
        const __m512i lo = _mm512_and_si512(v, low);                         // inputs 8i..8i+3 of 16 outputs
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);  // inputs 8i+4..8i+7
        for (int m = 0; m < MB; ++m) {
          const int32_t* xm = (const int32_t*)(xq + m * K + 8 * i);  // 4 int8 activations per int32
          dot[t][m] = _mm512_dpbusd_epi32(dot[t][m], lo, _mm512_set1_epi32(xm[0]));
          dot[t][m] = _mm512_dpbusd_epi32(dot[t][m], hi, _mm512_set1_epi32(xm[1]));
        }
      }
    }
    for (int t = 0; t < T; ++t) {
      const __m512 s = load_bf16x16(scale + ((tile0 + t) * G + g) * 16);
      const __m512 z = load_bf16x16(zero + ((tile0 + t) * G + g) * 16);
      for (int m = 0; m < MB; ++m) {
        const __m512 d = _mm512_mul_ps(_mm512_cvtepi32_ps(dot[t][m]), _mm512_set1_ps(xs[m * G + g]));
        acc[t][m] = _mm512_fmadd_ps(s, d, acc[t][m]);
        acc[t][m] = _mm512_fmadd_ps(z, _mm512_set1_ps(xsum[m * G + g]), acc[t][m]);
      }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int m = 0; m < MB; ++m) _mm512_storeu_ps(y + m * N + (tile0 + t) * 16, acc[t][m]);
}

// All tiles for MB rows, split over PyTorch's threads; T tiles at a time hide the multiply-add latency when
// there are few rows (T * MB independent accumulators).
template <int MB, int T>
void all_tiles(const int8_t* xq, const float* xs, const float* xsum, int64_t K, int64_t N, const uint8_t* codes,
               const uint16_t* scale, const uint16_t* zero, float* y) {
  const int64_t tiles = N / 16, full = tiles / T;
  at::parallel_for(0, full, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) tile_rows<MB, T>(xq, xs, xsum, K, N, codes, scale, zero, y, i * T);
  });
  for (int64_t t = full * T; t < tiles; ++t) tile_rows<MB, 1>(xq, xs, xsum, K, N, codes, scale, zero, y, t);
}

void rows_block(int64_t mb, const int8_t* xq, const float* xs, const float* xsum, int64_t K, int64_t N,
                const uint8_t* codes, const uint16_t* scale, const uint16_t* zero, float* y) {
  switch (mb) {
    case 1: return all_tiles<1, 4>(xq, xs, xsum, K, N, codes, scale, zero, y);
    case 2: return all_tiles<2, 4>(xq, xs, xsum, K, N, codes, scale, zero, y);
    case 3: return all_tiles<3, 2>(xq, xs, xsum, K, N, codes, scale, zero, y);
    case 4: return all_tiles<4, 2>(xq, xs, xsum, K, N, codes, scale, zero, y);
    case 5: return all_tiles<5, 2>(xq, xs, xsum, K, N, codes, scale, zero, y);
    case 6: return all_tiles<6, 2>(xq, xs, xsum, K, N, codes, scale, zero, y);
    case 7: return all_tiles<7, 1>(xq, xs, xsum, K, N, codes, scale, zero, y);
    default: return all_tiles<8, 1>(xq, xs, xsum, K, N, codes, scale, zero, y);
  }
}

// One row's group of 32 activations (fp32) -> 32 int8 codes, their scale, and the sum of the quantised values
// (scale * sum of codes: the zero term must see the same activations as the codes' term, or the two large terms
// of an offset grid no longer cancel; with the exact sum the error was ~3x larger on Gaussian data).
inline void quantize_group(const float* x, int8_t* q, float* scale, float* sum) {
  const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
  *scale = amax > 0.f ? amax / 127.f : 1.f;
  const __m512 inv = _mm512_set1_ps(1.f / *scale);
  // round half to even (the default rounding mode), as torch.round in the reference
  const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, inv)), qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, inv));
  _mm_storeu_si128((__m128i*)q, _mm512_cvtsepi32_epi8(qa));
  _mm_storeu_si128((__m128i*)(q + 16), _mm512_cvtsepi32_epi8(qb));
  *sum = *scale * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
}

inline uint16_t to_bf16(float f) {  // round to nearest even, as torch's float -> bfloat16 (finite values)
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}

}  // namespace

// x [M, K] bf16 or fp32 -> [M, N] in x's dtype.
torch::Tensor w4a8_mm(const torch::Tensor& x_in, const torch::Tensor& codes, const torch::Tensor& scale,
                      const torch::Tensor& zero) {
  TORCH_CHECK(x_in.dim() == 2, "w4a8_mm: x must be 2-D [M, K]");
  TORCH_CHECK(x_in.scalar_type() == torch::kFloat32 || x_in.scalar_type() == torch::kBFloat16,
              "w4a8_mm: x must be float32 or bfloat16");
  TORCH_CHECK(codes.scalar_type() == torch::kUInt8 && codes.dim() == 4 && codes.size(2) == 16 && codes.size(3) == 4,
              "w4a8_mm: codes must be uint8 [N/16, K/8, 16, 4]");
  TORCH_CHECK(scale.scalar_type() == torch::kBFloat16 && zero.scalar_type() == torch::kBFloat16,
              "w4a8_mm: scale and zero must be bfloat16 [N/16, K/32, 16]");
  const int64_t M = x_in.size(0), K = x_in.size(1), N = codes.size(0) * 16;
  TORCH_CHECK(K % GROUP == 0 && codes.size(1) * 8 == K && scale.size(1) * GROUP == K, "w4a8_mm: K mismatch");
  TORCH_CHECK(codes.is_contiguous() && scale.is_contiguous() && zero.is_contiguous(), "w4a8_mm: weights contiguous");
  const torch::Tensor xf = x_in.to(torch::kFloat32).contiguous();
  const int64_t G = K / GROUP;
  std::vector<int8_t> xq(M * K);
  std::vector<float> xs(M * G), xsum(M * G);
  const float* xp = xf.data_ptr<float>();
  for (int64_t r = 0; r < M * G; ++r) quantize_group(xp + r * GROUP, xq.data() + r * GROUP, &xs[r], &xsum[r]);

  const bool bf16 = x_in.scalar_type() == torch::kBFloat16;
  torch::Tensor y = torch::empty({M, N}, xf.options());
  float* yp = y.data_ptr<float>();
  const uint8_t* cp = codes.data_ptr<uint8_t>();
  const uint16_t* sp = (const uint16_t*)scale.data_ptr();
  const uint16_t* zp = (const uint16_t*)zero.data_ptr();
  for (int64_t m0 = 0; m0 < M; m0 += 8)
    rows_block(std::min<int64_t>(8, M - m0), xq.data() + m0 * K, xs.data() + m0 * G, xsum.data() + m0 * G, K, N,
               cp, sp, zp, yp + m0 * N);
  if (!bf16) return y;
  torch::Tensor out = torch::empty({M, N}, x_in.options());
  uint16_t* op = (uint16_t*)out.data_ptr();
  at::parallel_for(0, M * N, 16384, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) op[i] = to_bf16(yp[i]);
  });
  return out;
}

TORCH_LIBRARY(tpro, m) { m.def("w4a8_mm(Tensor x, Tensor codes, Tensor scale, Tensor zero) -> Tensor"); }
TORCH_LIBRARY_IMPL(tpro, CPU, m) { m.impl("w4a8_mm", &w4a8_mm); }
