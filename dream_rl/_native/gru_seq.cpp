// Whole-sequence GRU recurrence (forward and hand-written backward), CPU, float32 and float64.
//
// Only the part that must run step by step lives here: the hidden-to-hidden matrix product and the
// gates. The input projection gi = x W_ih^T + b_ih for all T steps is one GEMM before the forward
// kernel, and the weight gradients are GEMMs after the backward kernel (dream_rl/fast_gru.py, whose
// pure-PyTorch kernel is the readable version of this file). The equations are nn.GRU's:
//
//   r = sigmoid(gi_r + W_hr h + b_hr)      z = sigmoid(gi_z + W_hz h + b_hz)
//   hn = W_hn h + b_hn                      n = tanh(gi_n + r * hn)
//   h' = (1 - z) * n + z * h  =  n + z * (h - n)
//
// Called through ctypes (no Python or torch headers). Every array is a contiguous row-major buffer
// owned by the caller, whose shapes the caller has checked:
//   gi (T,B,3H) pre-activations [r|z|n] with b_ih added, w_hh (3H,H), b_hh (3H), h0 (B,H),
//   out (T,B,H), hn (T,B,H), g_out (T,B,H), g_h0 (B,H).
// To keep memory traffic (and page faults on fresh buffers) down, the buffers are reused in place:
// the forward overwrites gi with the gates r, z, n it saves for the backward, and the backward
// overwrites those gates with their gradients d_gi and hn with dn * r.
// The kernels copy the weights into zero-padded panels so that the inner loops run over whole
// vectors; the hidden size need not be a multiple of the vector width (tails use partial loads
// and stores, never touching memory past a row).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
constexpr int kMaxRows = 8;  // rows of the batch per micro-tile: 8 x 3 accumulators fit 32 registers
#else
constexpr int kVecBytes = 32;
constexpr int kMaxRows = 4;  // 16 registers
#endif

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(kVecBytes)));
  typedef int32_t IV __attribute__((vector_size(kVecBytes)));
  static constexpr int L = kVecBytes / 4;
  // exp range reduction: x = n ln2 + r, |r| <= ln2/2; ln2 split in two for an exact n*ln2_hi
  static constexpr float lo = -87.0f, hi = 88.0f;  // keeps 2^n a normal number
  static constexpr float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  static constexpr float round_magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  static constexpr int bias = 127, mantissa = 23, degree = 8;
};
template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(kVecBytes)));
  typedef int64_t IV __attribute__((vector_size(kVecBytes)));
  static constexpr int L = kVecBytes / 8;
  static constexpr double lo = -708.0, hi = 709.0;
  static constexpr double log2e = 1.4426950408889634074, ln2_hi = 6.93147180369123816490e-01,
                          ln2_lo = 1.90821492927058770002e-10;
  static constexpr double round_magic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr int bias = 1023, mantissa = 52, degree = 14;
};

template <typename T>
using Vec = typename Simd<T>::V;

// 1/k! for k = 0 .. degree, the Taylor coefficients of exp
template <typename T>
struct InvFactorials {
  T c[Simd<T>::degree + 1];
  constexpr InvFactorials() : c() {
    double f = 1;
    c[0] = 1;
    for (int k = 1; k <= Simd<T>::degree; ++k) {
      f *= k;
      c[k] = static_cast<T>(1.0 / f);
    }
  }
};
template <typename T>
constexpr InvFactorials<T> kInvFact{};

// x in every lane (x - 0 is x exactly, so this is a plain broadcast; 0 + x is not: -0 + 0 = +0)
template <typename T>
inline Vec<T> splat(T x) {
  return x - Vec<T>{};
}
template <typename T>
inline Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
inline void store(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof(v));
}
// the first n (< L) elements; the rest are zero
template <typename T>
inline Vec<T> load_part(const T* p, int64_t n) {
  Vec<T> v = Vec<T>{};
  std::memcpy(&v, p, n * sizeof(T));
  return v;
}
template <typename T>
inline void store_part(T* p, const Vec<T>& v, int64_t n) {
  std::memcpy(p, &v, n * sizeof(T));
}
template <typename T>
inline Vec<T> load_n(const T* p, int64_t n) {
  return n == Simd<T>::L ? load<T>(p) : load_part<T>(p, n);
}
template <typename T>
inline void store_n(T* p, const Vec<T>& v, int64_t n) {
  if (n == Simd<T>::L)
    store<T>(p, v);
  else
    store_part<T>(p, v, n);
}

// exp(x) = scale * (1 + q) and expm1(x) = (scale - 1) + scale * q, with scale = 2^n and
// q = expm1(r) by its Taylor series (|r| <= ln2/2: the truncation error is below half an ulp).
// Inputs are clamped to [lo, hi] (exp underflows to ~1e-38 / 1e-308 instead of 0 and saturates
// instead of overflowing: both far outside what the gates can resolve); NaN stays NaN.
template <typename T>
inline void exp_parts(Vec<T> x, Vec<T>& scale, Vec<T>& q) {
  using S = Simd<T>;
  using V = Vec<T>;
  using IV = typename S::IV;
  x = x < S::lo ? V{} + S::lo : x;
  x = x > S::hi ? V{} + S::hi : x;
  V n = (x * S::log2e + S::round_magic) - S::round_magic;
  n = n == n ? n : V{};  // NaN would make the integer conversion undefined; q carries the NaN
  const V r = (x - n * S::ln2_hi) - n * S::ln2_lo;
  // Horner over 1/k!, k = degree .. 1
  V p = V{} + kInvFact<T>.c[S::degree];
  for (int k = S::degree - 1; k >= 1; --k) p = p * r + kInvFact<T>.c[k];
  q = p * r;
  const IV ni = __builtin_convertvector(n, IV);
  scale = (V)((ni + S::bias) << S::mantissa);
}

template <typename T>
inline Vec<T> sigmoid(Vec<T> x) {
  Vec<T> scale, q;
  exp_parts<T>(-x, scale, q);
  return T(1) / (T(1) + (scale + scale * q));
}

// tanh(x) = sign(x) * -m / (2 + m), m = expm1(-2|x|): accurate to a few ulps near 0 as well
template <typename T>
inline Vec<T> tanh_(Vec<T> x) {
  using V = Vec<T>;
  const V a = x < T(0) ? -x : x;
  V scale, q;
  exp_parts<T>(T(-2) * a, scale, q);
  const V m = (scale - T(1)) + scale * q;
  const V t = -m / (T(2) + m);
  return x < T(0) ? -t : t;
}

// Weight panels. Forward: wf[jb][k][g][l] = w_hh[g*H + jb*L + l][k] (zero past H): one hidden
// block's r, z and n columns for all k, contiguous. Backward: wb[jb][k][l] = w_hh[k][jb*L + l].
template <typename T>
void pack_forward(const T* w_hh, int64_t H, int64_t NB, std::vector<T>& wf) {
  constexpr int L = Simd<T>::L;
  wf.assign(static_cast<size_t>(NB * H * 3 * L), T(0));
  for (int64_t jb = 0; jb < NB; ++jb)
    for (int64_t k = 0; k < H; ++k)
      for (int g = 0; g < 3; ++g)
        for (int l = 0; l < L && jb * L + l < H; ++l)
          wf[((jb * H + k) * 3 + g) * L + l] = w_hh[(g * H + jb * L + l) * H + k];
}

template <typename T>
void pack_backward(const T* w_hh, int64_t H, int64_t NB, std::vector<T>& wb) {
  constexpr int L = Simd<T>::L;
  wb.assign(static_cast<size_t>(NB * 3 * H * L), T(0));
  for (int64_t jb = 0; jb < NB; ++jb)
    for (int64_t k = 0; k < 3 * H; ++k)
      for (int l = 0; l < L && jb * L + l < H; ++l) wb[(jb * 3 * H + k) * L + l] = w_hh[k * H + jb * L + l];
}

struct Dims {
  int64_t T, B, H;
};

// One forward step for MR batch rows b0.. and hidden block jb: the matrix product, then the gates.
// With save, the gates r, z, n overwrite gi's pre-activations in place (each (row, block) is read
// before it is written, and by this tile only) and hn goes to hn_t.
template <typename T, int MR>
inline void forward_tile(const Dims& d, int64_t b0, int64_t jb, const T* __restrict wf, const T* __restrict b_hh,
                         T* gi_t, const T* __restrict h_prev, T* __restrict h_out, T* __restrict hn_t) {
  using V = Vec<T>;
  constexpr int L = Simd<T>::L;
  const int64_t H = d.H;
  V acc[MR][3];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = acc[i][2] = V{};
  const T* w = wf + jb * H * 3 * L;
  const T* hp = h_prev + b0 * H;
  for (int64_t k = 0; k < H; ++k) {
    const V w0 = load<T>(w + k * 3 * L), w1 = load<T>(w + k * 3 * L + L), w2 = load<T>(w + k * 3 * L + 2 * L);
    for (int i = 0; i < MR; ++i) {
      const V hb = splat<T>(hp[i * H + k]);
      acc[i][0] += hb * w0;
      acc[i][1] += hb * w1;
      acc[i][2] += hb * w2;
    }
  }
  const int64_t j0 = jb * L, cnt = std::min<int64_t>(L, H - j0);
  const V br = load_n<T>(b_hh + j0, cnt), bz = load_n<T>(b_hh + H + j0, cnt), bn = load_n<T>(b_hh + 2 * H + j0, cnt);
  for (int i = 0; i < MR; ++i) {
    const int64_t b = b0 + i;
    T* g = gi_t + b * 3 * H;
    const V r = sigmoid<T>(load_n<T>(g + j0, cnt) + (acc[i][0] + br));
    const V z = sigmoid<T>(load_n<T>(g + H + j0, cnt) + (acc[i][1] + bz));
    const V hn = acc[i][2] + bn;
    const V n = tanh_<T>(load_n<T>(g + 2 * H + j0, cnt) + r * hn);
    const V h = load_n<T>(h_prev + b * H + j0, cnt);
    store_n<T>(h_out + b * H + j0, n + z * (h - n), cnt);
    if (hn_t != nullptr) {
      store_n<T>(g + j0, r, cnt);
      store_n<T>(g + H + j0, z, cnt);
      store_n<T>(g + 2 * H + j0, n, cnt);
      store_n<T>(hn_t + b * H + j0, hn, cnt);
    }
  }
}

template <typename T, int MR>
inline void forward_rows(const Dims& d, int64_t& b0, int64_t jb, const T* wf, const T* b_hh, T* gi_t,
                         const T* h_prev, T* h_out, T* hn_t) {
  for (; b0 + MR <= d.B; b0 += MR) forward_tile<T, MR>(d, b0, jb, wf, b_hh, gi_t, h_prev, h_out, hn_t);
}

template <typename T>
void forward(const Dims& d, T* gi, const T* w_hh, const T* b_hh, const T* h0, T* out, T* hn) {
  constexpr int L = Simd<T>::L;
  const int64_t B = d.B, H = d.H, NB = (H + L - 1) / L;
  std::vector<T> wf;
  pack_forward(w_hh, H, NB, wf);
  for (int64_t t = 0; t < d.T; ++t) {
    const T* h_prev = t == 0 ? h0 : out + (t - 1) * B * H;
    T* gi_t = gi + t * B * 3 * H;
    T* h_out = out + t * B * H;
    T* hn_t = hn == nullptr ? nullptr : hn + t * B * H;
    // hidden blocks outer: one block's weight panel stays in L1 across the batch rows
    for (int64_t jb = 0; jb < NB; ++jb) {
      int64_t b0 = 0;
      forward_rows<T, kMaxRows>(d, b0, jb, wf.data(), b_hh, gi_t, h_prev, h_out, hn_t);
      if (kMaxRows > 4) forward_rows<T, 4>(d, b0, jb, wf.data(), b_hh, gi_t, h_prev, h_out, hn_t);
      forward_rows<T, 2>(d, b0, jb, wf.data(), b_hh, gi_t, h_prev, h_out, hn_t);
      forward_rows<T, 1>(d, b0, jb, wf.data(), b_hh, gi_t, h_prev, h_out, hn_t);
    }
  }
}

// Step t's gate gradients for row b, hidden block j0.. (cnt lanes), from dh = dL/dh_t, in place:
// the gates r, z, n (gates_tb, 3H) become d_gi = [dr, dz, dn] (pre-activation gradients), hn
// (hn_tb, H) becomes dn * r, so that [dr, dz, dn * r] is d_gh, the gradient of W_hh h + b_hh.
// Everything is loaded before anything is stored. Returns dh * z, the direct part of dL/dh_{t-1}.
template <typename T>
inline Vec<T> gate_grads(int64_t H, int64_t j0, int64_t cnt, const Vec<T>& dh, T* gates_tb, T* hn_tb,
                         const T* h_prev_b) {
  using V = Vec<T>;
  const V r = load_n<T>(gates_tb + j0, cnt), z = load_n<T>(gates_tb + H + j0, cnt);
  const V n = load_n<T>(gates_tb + 2 * H + j0, cnt), hn = load_n<T>(hn_tb + j0, cnt);
  const V h = load_n<T>(h_prev_b + j0, cnt);
  const V dn = dh * (T(1) - z) * (T(1) - n * n);
  const V dr = dn * hn * r * (T(1) - r);
  const V dz = dh * (h - n) * z * (T(1) - z);
  store_n<T>(gates_tb + j0, dr, cnt);
  store_n<T>(gates_tb + H + j0, dz, cnt);
  store_n<T>(gates_tb + 2 * H + j0, dn, cnt);
  store_n<T>(hn_tb + j0, dn * r, cnt);
  return dh * z;
}

// dL/dh_{t-1} = dh_t * z_t + d_gh[t] @ W_hh for MR rows and NJ hidden blocks, d_gh[t] being
// [d_gi[t][:, :2H], d_ghn[t]]; then (t > 0) step t-1's gate gradients for the same rows and
// columns, or (t == 0) the gradient of h0.
template <typename T, int MR, int NJ>
inline void backward_tile(const Dims& d, int64_t t, int64_t b0, int64_t jb0, const T* __restrict wb, const T* h0,
                          const T* out, const T* g_out, T* gates, T* hn, T* dhz, T* g_h0) {
  using V = Vec<T>;
  constexpr int L = Simd<T>::L;
  const int64_t B = d.B, H = d.H, K = 3 * H;
  V acc[MR][NJ];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NJ; ++j) acc[i][j] = V{};
  const T* w = wb + jb0 * K * L;
  const T* a = gates + (t * B + b0) * 3 * H;  // rows of 3H; the first 2H are d_gh's r and z parts
  for (int64_t k = 0; k < 2 * H; ++k) {
    V wv[NJ];
    for (int j = 0; j < NJ; ++j) wv[j] = load<T>(w + (j * K + k) * L);
    for (int i = 0; i < MR; ++i) {
      const V ab = splat<T>(a[i * 3 * H + k]);
      for (int j = 0; j < NJ; ++j) acc[i][j] += ab * wv[j];
    }
  }
  const T* an = hn + (t * B + b0) * H;  // rows of H: d_gh's n part
  for (int64_t k = 0; k < H; ++k) {
    V wv[NJ];
    for (int j = 0; j < NJ; ++j) wv[j] = load<T>(w + (j * K + 2 * H + k) * L);
    for (int i = 0; i < MR; ++i) {
      const V ab = splat<T>(an[i * H + k]);
      for (int j = 0; j < NJ; ++j) acc[i][j] += ab * wv[j];
    }
  }
  for (int i = 0; i < MR; ++i) {
    const int64_t b = b0 + i;
    for (int j = 0; j < NJ; ++j) {
      const int64_t j0 = (jb0 + j) * L, cnt = std::min<int64_t>(L, H - j0);
      const V carry = acc[i][j] + load_n<T>(dhz + b * H + j0, cnt);
      if (t == 0) {
        store_n<T>(g_h0 + b * H + j0, carry, cnt);
      } else {
        const int64_t s = t - 1;
        const V dh = carry + load_n<T>(g_out + (s * B + b) * H + j0, cnt);
        const T* h_prev = s == 0 ? h0 + b * H : out + ((s - 1) * B + b) * H;
        const V next = gate_grads<T>(H, j0, cnt, dh, gates + (s * B + b) * 3 * H, hn + (s * B + b) * H, h_prev);
        store_n<T>(dhz + b * H + j0, next, cnt);
      }
    }
  }
}

template <typename T, int NJ>
inline void backward_block(const Dims& d, int64_t t, int64_t jb0, const T* wb, const T* h0, const T* out,
                           const T* g_out, T* gates, T* hn, T* dhz, T* g_h0) {
  int64_t b0 = 0;
  for (; b0 + kMaxRows <= d.B; b0 += kMaxRows)
    backward_tile<T, kMaxRows, NJ>(d, t, b0, jb0, wb, h0, out, g_out, gates, hn, dhz, g_h0);
  if (kMaxRows > 4)
    for (; b0 + 4 <= d.B; b0 += 4) backward_tile<T, 4, NJ>(d, t, b0, jb0, wb, h0, out, g_out, gates, hn, dhz, g_h0);
  for (; b0 + 2 <= d.B; b0 += 2) backward_tile<T, 2, NJ>(d, t, b0, jb0, wb, h0, out, g_out, gates, hn, dhz, g_h0);
  for (; b0 < d.B; ++b0) backward_tile<T, 1, NJ>(d, t, b0, jb0, wb, h0, out, g_out, gates, hn, dhz, g_h0);
}

// In place: gates (T,B,3H) = [r|z|n] becomes d_gi, hn (T,B,H) becomes d_gh's n part (dn * r).
template <typename T>
void backward(const Dims& d, const T* w_hh, const T* h0, const T* out, const T* g_out, T* gates, T* hn, T* g_h0) {
  using V = Vec<T>;
  constexpr int L = Simd<T>::L;
  const int64_t B = d.B, H = d.H, T_ = d.T, NB = (H + L - 1) / L;
  std::vector<T> wb;
  pack_backward(w_hh, H, NB, wb);
  std::vector<T> dhz(static_cast<size_t>(B * H));  // dh_t * z_t, the direct part of dL/dh_{t-1}
  // the last step's gate gradients: dL/dh_{T-1} is g_out[T-1] alone
  {
    const int64_t s = T_ - 1;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t jb = 0; jb < NB; ++jb) {
        const int64_t j0 = jb * L, cnt = std::min<int64_t>(L, H - j0);
        const V dh = load_n<T>(g_out + (s * B + b) * H + j0, cnt);
        const T* h_prev = s == 0 ? h0 + b * H : out + ((s - 1) * B + b) * H;
        const V next = gate_grads<T>(H, j0, cnt, dh, gates + (s * B + b) * 3 * H, hn + (s * B + b) * H, h_prev);
        store_n<T>(dhz.data() + b * H + j0, next, cnt);
      }
  }
  T* dz = dhz.data();
  for (int64_t t = T_ - 1; t >= 0; --t) {
    int64_t jb = 0;
    if (kMaxRows > 4)  // 8 rows x 3 blocks = 24 accumulators: fits AVX-512's 32 registers (measured 5-15 % faster)
      for (; jb + 3 <= NB; jb += 3) backward_block<T, 3>(d, t, jb, wb.data(), h0, out, g_out, gates, hn, dz, g_h0);
    for (; jb + 2 <= NB; jb += 2) backward_block<T, 2>(d, t, jb, wb.data(), h0, out, g_out, gates, hn, dz, g_h0);
    for (; jb < NB; ++jb) backward_block<T, 1>(d, t, jb, wb.data(), h0, out, g_out, gates, hn, dz, g_h0);
  }
}

// ---------------------------------------------------------------------------------------------
// C (M,N) = A (M,K) @ B (K,N) [+ bias (N)], A and B strided (any non-negative strides: A^T of a
// row-major matrix is rows stride 1, k stride M). For the sequence-wide products around the
// recurrence (input projection, input and weight gradients): written here because on CPUs where
// torch's BLAS takes a narrower SIMD path than this build's, these products dominate otherwise.
// Blocked over k (chunks of kKc, whose A rows stay in L2) and over column panels of two vectors
// (packed, zero-padded, in L1); a micro-tile keeps MR x 2 accumulators in registers.

constexpr int64_t kKc = 128;

template <typename T, int MR, int NJ>
inline void gemm_tile(int64_t kc, const T* __restrict a, int64_t a_rs, int64_t a_ks, const T* __restrict bp,
                      T* __restrict c, int64_t ldc, int64_t ncols, const T* bias, bool first) {
  using V = Vec<T>;
  constexpr int L = Simd<T>::L;
  V acc[MR][NJ];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NJ; ++j) acc[i][j] = V{};
  for (int64_t k = 0; k < kc; ++k) {
    V bv[NJ];
    for (int j = 0; j < NJ; ++j) bv[j] = load<T>(bp + (k * 2 + j) * L);
    for (int i = 0; i < MR; ++i) {
      const V av = splat<T>(a[i * a_rs + k * a_ks]);
      for (int j = 0; j < NJ; ++j) acc[i][j] += av * bv[j];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NJ; ++j) {
      const int64_t cnt = std::min<int64_t>(L, ncols - j * L);
      T* ci = c + i * ldc + j * L;
      V v = acc[i][j];
      if (first) {
        if (bias != nullptr) v += load_n<T>(bias + j * L, cnt);
      } else {
        v += load_n<T>(ci, cnt);
      }
      store_n<T>(ci, v, cnt);
    }
}

template <typename T, int MR, int NJ>
inline void gemm_rows(int64_t& i, int64_t M, int64_t kc, const T* a, int64_t a_rs, int64_t a_ks, const T* bp, T* c,
                      int64_t ldc, int64_t ncols, const T* bias, bool first) {
  for (; i + MR <= M; i += MR)
    gemm_tile<T, MR, NJ>(kc, a + i * a_rs, a_rs, a_ks, bp, c + i * ldc, ldc, ncols, bias, first);
}

template <typename T, int NJ>
void gemm_panel(int64_t M, int64_t kc, const T* a, int64_t a_rs, int64_t a_ks, const T* bp, T* c, int64_t ldc,
                int64_t ncols, const T* bias, bool first) {
  int64_t i = 0;
  gemm_rows<T, kMaxRows, NJ>(i, M, kc, a, a_rs, a_ks, bp, c, ldc, ncols, bias, first);
  if (kMaxRows > 4) gemm_rows<T, 4, NJ>(i, M, kc, a, a_rs, a_ks, bp, c, ldc, ncols, bias, first);
  gemm_rows<T, 2, NJ>(i, M, kc, a, a_rs, a_ks, bp, c, ldc, ncols, bias, first);
  gemm_rows<T, 1, NJ>(i, M, kc, a, a_rs, a_ks, bp, c, ldc, ncols, bias, first);
}

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T* a, int64_t a_rs, int64_t a_ks, const T* b, int64_t b_ks,
          int64_t b_ns, const T* bias, T* c) {
  constexpr int L = Simd<T>::L;
  constexpr int64_t PW = 2 * L;  // panel width
  std::vector<T> bp(static_cast<size_t>(kKc * PW));
  for (int64_t k0 = 0; k0 < K; k0 += kKc) {
    const int64_t kc = std::min(kKc, K - k0);
    for (int64_t j0 = 0; j0 < N; j0 += PW) {
      const int64_t ncols = std::min(PW, N - j0);
      for (int64_t k = 0; k < kc; ++k) {
        T* row = bp.data() + k * PW;
        const T* src = b + (k0 + k) * b_ks + j0 * b_ns;
        if (b_ns == 1) {
          std::memcpy(row, src, ncols * sizeof(T));
        } else {
          for (int64_t j = 0; j < ncols; ++j) row[j] = src[j * b_ns];
        }
        std::fill(row + ncols, row + PW, T(0));
      }
      const T* ak = a + k0 * a_ks;
      const T* bj = bias == nullptr ? nullptr : bias + j0;
      if (ncols > L)
        gemm_panel<T, 2>(M, kc, ak, a_rs, a_ks, bp.data(), c + j0, N, ncols, bj, k0 == 0);
      else
        gemm_panel<T, 1>(M, kc, ak, a_rs, a_ks, bp.data(), c + j0, N, ncols, bj, k0 == 0);
    }
  }
}

bool valid(const int64_t* dims) {
  return dims != nullptr && dims[0] > 0 && dims[1] > 0 && dims[2] > 0;
}

}  // namespace

extern "C" {

int64_t gru_seq_abi_version() { return 3; }

// The SIMD width in elements of float (diagnostics: 16 with AVX-512, 8 otherwise).
int64_t gru_seq_float_lanes() { return Simd<float>::L; }

// dims = {T, B, H}. gi (T,B,3H): the input pre-activations; with hn non-null (training) they are
// overwritten by the gates r, z, n and hn (T,B,H) receives W_hn h + b_hn; with hn null (inference)
// gi is only read. Returns 0, or 1 on invalid dims (nothing written).
#define GRU_FORWARD(NAME, TYPE)                                                                           \
  int NAME(const int64_t* dims, TYPE* gi, const TYPE* w_hh, const TYPE* b_hh, const TYPE* h0, TYPE* out,   \
           TYPE* hn) {                                                                                    \
    if (!valid(dims)) return 1;                                                                           \
    forward<TYPE>(Dims{dims[0], dims[1], dims[2]}, gi, w_hh, b_hh, h0, out, hn);                          \
    return 0;                                                                                             \
  }
GRU_FORWARD(gru_seq_forward_f32, float)
GRU_FORWARD(gru_seq_forward_f64, double)

// dims = {T, B, H}. In place: gates (T,B,3H) becomes d_gi (gradient of gi), hn (T,B,H) becomes the
// n part of d_gh (gradient of W_hh h + b_hh; its r and z parts equal d_gi's). g_h0 (B,H) is written.
#define GRU_BACKWARD(NAME, TYPE)                                                                         \
  int NAME(const int64_t* dims, const TYPE* w_hh, const TYPE* h0, const TYPE* out, const TYPE* g_out,      \
           TYPE* gates, TYPE* hn, TYPE* g_h0) {                                                          \
    if (!valid(dims)) return 1;                                                                          \
    backward<TYPE>(Dims{dims[0], dims[1], dims[2]}, w_hh, h0, out, g_out, gates, hn, g_h0);              \
    return 0;                                                                                            \
  }
GRU_BACKWARD(gru_seq_backward_f32, float)
GRU_BACKWARD(gru_seq_backward_f64, double)

// dims = {M, N, K, a_rs, a_ks, b_ks, b_ns}: c (M,N) contiguous = a @ b (+ bias (N), may be null).
// Returns 1 (nothing written) unless M, N, K > 0 and every stride >= 0.
#define GRU_GEMM(NAME, TYPE)                                                                             \
  int NAME(const int64_t* dims, const TYPE* a, const TYPE* b, const TYPE* bias, TYPE* c) {               \
    if (dims == nullptr || dims[0] <= 0 || dims[1] <= 0 || dims[2] <= 0) return 1;                       \
    for (int i = 3; i < 7; ++i)                                                                          \
      if (dims[i] < 0) return 1;                                                                         \
    gemm<TYPE>(dims[0], dims[1], dims[2], a, dims[3], dims[4], b, dims[5], dims[6], bias, c);            \
    return 0;                                                                                            \
  }
GRU_GEMM(gru_seq_gemm_f32, float)
GRU_GEMM(gru_seq_gemm_f64, double)

}  // extern "C"
