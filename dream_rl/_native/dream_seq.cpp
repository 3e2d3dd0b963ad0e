// Whole-sequence DREAM kernels (forward and hand-written backward), CPU, float32 and float64.
//
// The same algorithm as the pure-PyTorch kernel in dream_rl/dream/kernels/torch_kernel.py (_TorchKernel),
// which is the readable version; DREAMCell.step (dream_rl/dream/cell.py) is the reference both are
// tested against. Compiled on first use by dream_rl/_native/build.py, called through ctypes by
// dream_rl/dream/kernels/native.py: no Python or torch headers, every tensor is a contiguous buffer
// owned by the caller, whose shapes, dtypes and devices the caller has checked (native.py) -- this
// file trusts the dims it is handed.
//
// Ablations (DREAMConfig): surprise_gating is the `gating` flag below; without fast weights or error
// injection the caller hands zeros for eta or W, which removes the term exactly.
//
// Layouts (row-major, contiguous): x (T,B,I), Bm = weight_in (H,I), b (H),
// R (H,H), C (I,H), W (H,I), V (I,r), state U and U_target (B,H,r), scalars (T,B,NSC).
// Inside the kernels the fast weights are kept transposed, (B,r,H), so that every loop over them
// runs along H (long, contiguous, vectorised) rather than along r (short).
//
// Memory: the forward does not save the fast weights of every step (T*B*H*r values: most of the
// memory traffic and page faults of a training step). It saves U and U_target every K steps
// (checkpoints, (NC,B,r,H)); the backward recomputes U' for one segment of K steps at a time from
// its checkpoint (the same expressions, so the same values) before walking it in reverse. The
// hidden state before each step is the previous output (or h0): not saved either.
//
// Threads: samples never interact, so the batch is split into contiguous slices, one per thread,
// each running the whole time loop for its samples (no synchronisation inside the loop); the
// parameter gradients that sum over the batch are reduced in a fixed order after the join. Built
// with -fopenmp (where torch's CPU backend is OpenMP), the slices run on the OpenMP runtime torch has
// loaded (libgomp.so.1 is bound by its soname, so there is one runtime and one pool of workers);
// otherwise on std::threads started per call.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

constexpr double kEps = 1e-6;
constexpr double kTauMin = 0.01, kTauMax = 100.0;
constexpr int NSC = 7;  // S, z, entropy (unclamped), |U'|^2, c, sleep mask, adaptive_tau before the step
constexpr int SC_S = 0, SC_Z = 1, SC_ENT = 2, SC_NSQ = 3, SC_C = 4, SC_M = 5, SC_AT = 6;

struct Config {
  double dt, lam, alpha, gamma, beta, beta_s, target_norm, kappa, zeta, min_sleep, log_2pi_e;
  bool gating;  // false: the surprise_gating ablation, S = 1 (a constant)
};

// Explicit SIMD through GCC/Clang vector extensions: 64 bytes (16 floats / 8 doubles) where AVX-512
// is enabled, else 32 bytes, portable (lowered to 16-byte operations on machines without AVX). Each
// output lane accumulates over k in the same order whatever the width, so the products' values do not
// depend on it (checked bitwise; the time it saves is in the README's Speed section).
#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#else
constexpr int kVecBytes = 32;
#endif
template <typename T>
struct Simd {
  typedef T type __attribute__((vector_size(kVecBytes)));
  static constexpr int lanes = kVecBytes / sizeof(T);
};
template <typename V, typename T>
inline V loadu(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename T>
inline void storeu(T* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}

template <typename T>
constexpr int64_t col_block() { return 2 * Simd<T>::lanes; }  // two vectors of columns

// out (M, Np) = A (M, K) @ W (K, Np), Np a multiple of col_block. Register-blocked micro-kernel:
// MR rows x two vectors of columns, accumulated over K in registers.
template <typename T, int MR>
inline void mm_block(const T* __restrict A, int64_t K, const T* __restrict W, int64_t Np, T* __restrict out) {
  using V = typename Simd<T>::type;
  constexpr int L = Simd<T>::lanes;
  V acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = V{};
  for (int64_t k = 0; k < K; ++k) {
    const V w0 = loadu<V>(W + k * Np), w1 = loadu<V>(W + k * Np + L);
    for (int i = 0; i < MR; ++i) {
      const V a = V{} + A[i * K + k];
      acc[i][0] += a * w0;
      acc[i][1] += a * w1;
    }
  }
  for (int i = 0; i < MR; ++i) {
    storeu(out + i * Np, acc[i][0]);
    storeu(out + i * Np + L, acc[i][1]);
  }
}

template <typename T>
void matmul(const T* A, int64_t M, int64_t K, const T* W, int64_t Np, T* out) {
  constexpr int64_t NR = col_block<T>();
  int64_t i = 0;
  for (; i + 4 <= M; i += 4)
    for (int64_t n = 0; n < Np; n += NR) mm_block<T, 4>(A + i * K, K, W + n, Np, out + i * Np + n);
  for (; i + 2 <= M; i += 2)
    for (int64_t n = 0; n < Np; n += NR) mm_block<T, 2>(A + i * K, K, W + n, Np, out + i * Np + n);
  for (; i < M; ++i)
    for (int64_t n = 0; n < Np; n += NR) mm_block<T, 1>(A + i * K, K, W + n, Np, out + i * Np + n);
}

template <typename T>
int64_t padded(int64_t n) {
  const int64_t nr = col_block<T>();
  return (n + nr - 1) / nr * nr;
}

inline double clamp(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

// tanh over an array. float: a branch-free, vectorisable evaluation (odd Taylor polynomial for
// |x| < 0.25, else 1 - 2 / (exp(2|x|) + 1) with exp by range reduction to [-ln2/2, ln2/2] and a
// degree-7 Taylor polynomial), within a few float ulps of std::tanh; double: std::tanh.
inline void tanh_array(const float* __restrict in, float* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const float x = in[j];
    const float ax = std::fabs(x);
    const float x2 = x * x;
    const float small =
        x * (1.0f + x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f + x2 * (-17.0f / 315.0f + x2 * (62.0f / 2835.0f)))));
    const float y2 = 2.0f * ax;
    const float y = y2 < 80.0f ? y2 : 80.0f;  // exp(80) is finite in float, tanh(40) == 1; NaN → 80
    const float kf = std::floor(y * 1.44269504088896341f + 0.5f);
    const float f = (y - kf * 0.693145751953125f) - kf * 1.42860682030941723e-6f;
    const float p =
        1.0f + f * (1.0f + f * (0.5f + f * (1.0f / 6.0f + f * (1.0f / 24.0f + f * (1.0f / 120.0f + f * (1.0f / 720.0f + f * (1.0f / 5040.0f)))))));
    const int32_t bits = (static_cast<int32_t>(kf) + 127) << 23;
    float two_k;
    std::memcpy(&two_k, &bits, sizeof(float));
    const float large = 1.0f - 2.0f / (p * two_k + 1.0f);
    const float v = ax < 0.25f ? small : std::copysign(large, x);
    out[j] = x == x ? v : x;  // NaN stays NaN
  }
}
inline void tanh_array(const double* __restrict in, double* __restrict out, int64_t n) {
  for (int64_t j = 0; j < n; ++j) out[j] = std::tanh(in[j]);
}

// transpose per sample: (B, n1, n2) -> (B, n2, n1)
template <typename T>
void transpose_batch(const T* in, T* out, int64_t B, int64_t n1, int64_t n2) {
  for (int64_t b = 0; b < B; ++b) {
    const T* src = in + b * n1 * n2;
    T* dst = out + b * n1 * n2;
    for (int64_t i = 0; i < n1; ++i)
      for (int64_t j = 0; j < n2; ++j) dst[j * n1 + i] = src[i * n2 + j];
  }
}


// Runs fn(i, b0, b1) on `nthreads` contiguous slices i of [0, B). Slice i always covers the same
// samples, whichever thread runs it, so results do not depend on how many threads actually ran.
template <typename F>
void parallel_slices(int64_t B, int64_t nthreads, const F& fn) {
  nthreads = std::max<int64_t>(1, std::min(nthreads, B));
  if (nthreads == 1) {
    fn(int64_t(0), int64_t(0), B);
    return;
  }
  std::vector<int64_t> bounds(nthreads + 1);
  for (int64_t i = 0; i <= nthreads; ++i) bounds[i] = B * i / nthreads;
#ifdef _OPENMP
  // torch's workers: after one of torch's parallel ops they spin for a while before sleeping, so a
  // thread of our own beside them would share a core with a spinning worker (measured: twice the
  // time on 2 cores); handing them the slices uses them instead. The runtime may grant fewer threads
  // than asked: each runs every team-th slice.
#pragma omp parallel num_threads(static_cast<int>(nthreads))
  {
    const int64_t team = omp_get_num_threads();
    for (int64_t i = omp_get_thread_num(); i < nthreads; i += team) fn(i, bounds[i], bounds[i + 1]);
  }
#else
  std::vector<std::thread> workers;
  int64_t started = 1;
  try {
    for (; started < nthreads; ++started) workers.emplace_back(fn, started, bounds[started], bounds[started + 1]);
  } catch (...) {  // std::system_error: no thread; run the remaining slices here
  }
  fn(int64_t(0), bounds[0], bounds[1]);
  for (int64_t i = started; i < nthreads; ++i) fn(i, bounds[i], bounds[i + 1]);
  for (auto& w : workers) w.join();
#endif
}

// The Hebbian write toward the target (step 6), one row q of U' (length H): shared by the forward
// and the backward's recomputation so both produce the same values.
template <typename T>
inline T hebbian_row(const T* u, const T* __restrict ut, const T* __restrict gh, T efq, T dt, T lam, T* up,
                     int64_t H) {  // up may be u (in place): each element is read before it is written
  T nsq = 0;
#pragma omp simd reduction(+ : nsq)
  for (int64_t j = 0; j < H; ++j) {
    const T v = u[j] + dt * (-lam * (u[j] - ut[j]) + gh[j] * efq);
    up[j] = v;
    nsq += v * v;
  }
  return nsq;
}

// U_new = c U' (step 7) and the sleep update of U_target (step 11), one row; the drive's read-out
// U_new (Vᵀx) is accumulated by the forward only (drive != nullptr).
template <typename T>
inline void apply_row(const T* up, T c, bool asleep, T zeta, T xq, T* u, T* __restrict ut, T* __restrict drive,
                      int64_t H) {  // u may be up (in place)
  if (drive != nullptr) {
    if (asleep) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T un = up[j] * c;
        u[j] = un;
        drive[j] += un * xq;
        ut[j] = ut[j] + zeta * (un - ut[j]);
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T un = up[j] * c;
        u[j] = un;
        drive[j] += un * xq;
      }
    }
  } else if (asleep) {
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T un = up[j] * c;
      u[j] = un;
      ut[j] = ut[j] + zeta * (un - ut[j]);
    }
  } else {
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) u[j] = up[j] * c;
  }
}

template <typename T>
inline void filter(const T* __restrict v_in, const T* __restrict V, int64_t I, int64_t r, T* __restrict out) {
  for (int64_t q = 0; q < r; ++q) out[q] = 0;
  for (int64_t i = 0; i < I; ++i) {
    const T vi = v_in[i];
    const T* row = V + i * r;
    for (int64_t q = 0; q < r; ++q) out[q] += vi * row[q];
  }
}

struct Dims {
  int64_t T, B, I, H, r, K, threads;
  bool save, ltc;
};

Dims read_dims(const int64_t* d) {
  // T, B, I, H, r, save, ltc, K (checkpoint interval), threads
  return Dims{d[0], d[1], d[2], d[3], d[4], d[7] > 0 ? d[7] : 1, d[8] > 0 ? d[8] : 1, d[5] != 0, d[6] != 0};
}

int64_t thread_count(const Dims& d) { return std::max<int64_t>(1, std::min(d.threads, d.B)); }

// Samples per chunk: each chunk of the batch runs the whole time loop before the next starts, so its
// per-sample fast-weight buffers (the backward's U' segment, dL/dU and dL/dU_target, and the work
// rows: (K + 4) r*H values a sample) stay in cache across steps, instead of streaming every sample's
// buffers through the cache at every step; larger chunks read the weights of the per-step products
// fewer times. A power of two up to 4 (the micro-kernel's row blocks) whose buffers fit in about 2 MB
// (a core's L2 and some of the shared L3 on the EPYC this was measured on; a budget of 384 KB, which
// gave chunks of 1-3 samples at H = 128-256, r = 16, took 10-20% longer there).
template <typename T>
int64_t chunk_size(const Dims& d) {
  const double per_sample = double(d.K + 4) * double(d.H) * double(d.r) * sizeof(T);
  const double fit = 2.0 * 1024.0 * 1024.0 / per_sample;
  int64_t chunk = 1;
  while (chunk < 4 && chunk * 2 <= fit) chunk *= 2;
  return chunk;
}

// fn(slot, b0, b1) over chunks of at most `chunk` samples, each thread's slice in order
template <typename F>
void parallel_chunks(int64_t B, int64_t nthreads, int64_t chunk, const F& fn) {
  parallel_slices(B, nthreads, [&](int64_t slot, int64_t b0, int64_t b1) {
    for (int64_t c0 = b0; c0 < b1; c0 += chunk) fn(slot, c0, std::min(b1, c0 + chunk));
  });
}

// ------------------------------------------------------------------------------------------ forward
// p: 0 x, 1 weight_in (H,I), 2 bias (H), 3 R, 4 C, 5 W, 6 V, 7 eta, 8 log_tau_sys, 9 log_surprise_scale,
//    10..16 initial state (h, U, U_target, adaptive_tau, error_mean, error_var, avg_surprise),
//    17 out (T,B,H), 18..23 final state (U, U_target, adaptive_tau, error_mean, error_var, avg_surprise),
//    24..30 saved (U checkpoints (NC,B,r,H), U_target checkpoints (NC,B,r,H), e (T,B,I), h_target (T,B,H),
//    em_prev (T,B,I), ev_prev (T,B,I), scalars (T,B,NSC)), null when not saving. NC = ceil(T / K).
template <typename T>
void forward_impl(const Dims& d, const Config& k, void* const* p) {
  const int64_t Tn = d.T, B = d.B, I = d.I, H = d.H, r = d.r, K = d.K, Hr = H * r;
  const bool save = d.save, ltc = d.ltc;
  const T* x = static_cast<const T*>(p[0]);
  const T* Bm = static_cast<const T*>(p[1]);
  const T* bias = static_cast<const T*>(p[2]);
  const T* R = static_cast<const T*>(p[3]);
  const T* C = static_cast<const T*>(p[4]);
  const T* Wm = static_cast<const T*>(p[5]);
  const T* V = static_cast<const T*>(p[6]);
  const T* eta = static_cast<const T*>(p[7]);
  const T* lts = static_cast<const T*>(p[8]);
  const T* lss = static_cast<const T*>(p[9]);
  const T* h0 = static_cast<const T*>(p[10]);
  const T* U0 = static_cast<const T*>(p[11]);
  const T* Ut0 = static_cast<const T*>(p[12]);
  const T* at0 = static_cast<const T*>(p[13]);
  const T* em0 = static_cast<const T*>(p[14]);
  const T* ev0 = static_cast<const T*>(p[15]);
  const T* avg0 = static_cast<const T*>(p[16]);
  T* out = static_cast<T*>(p[17]);
  T* U_fin = static_cast<T*>(p[18]);
  T* Ut_fin = static_cast<T*>(p[19]);
  T* at = static_cast<T*>(p[20]);
  T* em = static_cast<T*>(p[21]);
  T* ev = static_cast<T*>(p[22]);
  T* avg = static_cast<T*>(p[23]);
  T* ck_U = static_cast<T*>(p[24]);
  T* ck_Ut = static_cast<T*>(p[25]);
  T* sv_e = static_cast<T*>(p[26]);
  T* sv_ht = static_cast<T*>(p[27]);
  T* sv_em = static_cast<T*>(p[28]);
  T* sv_ev = static_cast<T*>(p[29]);
  T* sv_sc = static_cast<T*>(p[30]);

  // [R; C]ᵀ, zero-padded to Np columns: one product gives R h and C h
  const int64_t Np = padded<T>(H + I);
  std::vector<T> RCt(H * Np, T(0));
  for (int64_t j = 0; j < H; ++j)
    for (int64_t kk = 0; kk < H; ++kk) RCt[kk * Np + j] = R[j * H + kk];
  for (int64_t i = 0; i < I; ++i)
    for (int64_t kk = 0; kk < H; ++kk) RCt[kk * Np + H + i] = C[i * H + kk];
  std::vector<T> Wt(I * H), Bt(I * H);  // Wᵀ, Bᵀ (I, H)
  for (int64_t j = 0; j < H; ++j)
    for (int64_t i = 0; i < I; ++i) {
      Wt[i * H + j] = Wm[j * I + i];
      Bt[i * H + j] = Bm[j * I + i];
    }
  std::vector<T> tau_sys(H);
  for (int64_t j = 0; j < H; ++j) tau_sys[j] = std::exp(lts[j]);
  const T scale_ = std::exp(lss[0]);

  auto slice = [&](int64_t, int64_t b0, int64_t b1) {
    // Constants as locals of the loop's function: a float reached through the closure could alias the
    // float arrays stored to, and would be reloaded (even gathered) in every vectorised iteration.
    const T dt = T(k.dt), lam = T(k.lam), one_b = T(1.0 - k.beta), bta = T(k.beta);
    const T one_bs = T(1.0 - k.beta_s), bs = T(k.beta_s), tn = T(k.target_norm), kap = T(k.kappa);
    const T eps = T(kEps), eps2 = T(kEps * kEps), zeta = T(k.zeta), scale = scale_;
    const T log_2pi_e = T(k.log_2pi_e), alpha = T(k.alpha), gamma = T(k.gamma), min_sleep = T(k.min_sleep);
    const bool gating = k.gating;
    const int64_t nb = b1 - b0;
    std::vector<T> U(nb * Hr), Ut(nb * Hr);  // (nb, r, H), updated in place
    transpose_batch(U0 + b0 * Hr, U.data(), nb, H, r);
    transpose_batch(Ut0 + b0 * Hr, Ut.data(), nb, H, r);
    std::memcpy(at + b0, at0 + b0, sizeof(T) * nb);
    std::memcpy(em + b0 * I, em0 + b0 * I, sizeof(T) * nb * I);
    std::memcpy(ev + b0 * I, ev0 + b0 * I, sizeof(T) * nb * I);
    std::memcpy(avg + b0, avg0 + b0, sizeof(T) * nb);
    std::vector<T> mm(nb * Np), rec(r), ef(r), xf(r), e(I), drive(H), ht(H), gh(H);

    for (int64_t t = 0; t < Tn; ++t) {
      const T* hprev = t == 0 ? h0 : out + (t - 1) * B * H;
      matmul<T>(hprev + b0 * H, nb, H, RCt.data(), Np, mm.data());
      if (save && t % K == 0) {
        const int64_t off = ((t / K) * B + b0) * Hr;
        std::memcpy(ck_U + off, U.data(), sizeof(T) * nb * Hr);
        std::memcpy(ck_Ut + off, Ut.data(), sizeof(T) * nb * Hr);
      }
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t tb = t * B + b, lb = b - b0;
        const T* __restrict h = hprev + b * H;
        T* __restrict Ub = U.data() + lb * Hr;
        T* __restrict Utb = Ut.data() + lb * Hr;
        T* emb = em + b * I;
        T* evb = ev + b * I;
        const T* xt = x + tb * I;
        const T* hR = mm.data() + lb * Np;
        const T* hC = hR + H;
        // 1. prediction: x̂ = C h + V (Uᵀ h)
        for (int64_t q = 0; q < r; ++q) {
          const T* u = Ub + q * H;
          T acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int64_t j = 0; j < H; ++j) acc += h[j] * u[j];
          rec[q] = acc;
        }
        for (int64_t i = 0; i < I; ++i) {
          T acc = hC[i];
          for (int64_t q = 0; q < r; ++q) acc += rec[q] * V[i * r + q];
          e[i] = xt[i] - acc;
        }
        // 2. novelty; 3-5. entropy, threshold, surprise
        T qsum = 0, vsum = 0;
        for (int64_t i = 0; i < I; ++i) {
          const T dd = e[i] - emb[i];
          qsum += dd * dd / (evb[i] + eps);
          vsum += evb[i];
        }
        const T z = std::sqrt(qsum / T(I) + T(1e-12));
        const T n = z / (T(1) + z);
        const T ent = T(0.5) * (log_2pi_e + std::log(vsum / T(I) + eps));
        const T thr = at[b] * (T(1) + alpha * T(clamp(ent, 0.0, 2.0)));
        const T S = gating ? T(1) / (T(1) + std::exp(-(n - thr) / gamma)) : T(1);
        // 6. Hebbian write toward the target (U' written over U); 7. homeostasis
        filter(e.data(), V, I, r, ef.data());
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) gh[j] = eta[j] * S * h[j];
        T nsq = 0;
        for (int64_t q = 0; q < r; ++q)
          nsq += hebbian_row(Ub + q * H, Utb + q * H, gh.data(), ef[q], dt, lam, Ub + q * H, H);
        const T norm = std::sqrt(std::max(nsq, eps2));
        const T c = T(1) - kap * (T(1) - tn / std::max(norm, tn));
        // 10. statistics (the sleep mask of step 11 is known before the fast weights are written)
        if (save) {
          std::memcpy(sv_e + tb * I, e.data(), sizeof(T) * I);
          std::memcpy(sv_em + tb * I, emb, sizeof(T) * I);
          std::memcpy(sv_ev + tb * I, evb, sizeof(T) * I);
        }
        for (int64_t i = 0; i < I; ++i) {
          const T dd = e[i] - emb[i];
          emb[i] = one_b * emb[i] + bta * e[i];
          evb[i] = one_b * evb[i] + bta * dd * dd;
        }
        const T at_prev = at[b];
        at[b] = one_b * at_prev + bta * n;
        avg[b] = one_bs * avg[b] + bs * S;
        const bool asleep = avg[b] < min_sleep;
        // 8. drive (reads U_new = c U'), h* = tanh(drive); 11. sleep consolidation, in one pass
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) drive[j] = bias[j] + hR[j];
        for (int64_t i = 0; i < I; ++i) {
          const T s = S * e[i], xi = xt[i];
          const T* w = Wt.data() + i * H;
          const T* bt = Bt.data() + i * H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) drive[j] += xi * bt[j] + s * w[j];
        }
        filter(xt, V, I, r, xf.data());
        for (int64_t q = 0; q < r; ++q)
          apply_row(Ub + q * H, c, asleep, zeta, xf[q], Ub + q * H, Utb + q * H, drive.data(), H);
        T* htp = save ? sv_ht + tb * H : ht.data();
        tanh_array(drive.data(), htp, H);
        // 9. liquid time constant
        T* hn = out + tb * H;
        if (ltc) {
          const T D = T(1) + scale * S;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            T te = tau_sys[j] / D;
            te = te < T(kTauMin) ? T(kTauMin) : (te > T(kTauMax) ? T(kTauMax) : te);
            const T a = dt / (te + dt);
            hn[j] = (T(1) - a) * h[j] + a * htp[j];
          }
        } else {
          std::memcpy(hn, htp, sizeof(T) * H);
        }
        if (save) {
          T* sc = sv_sc + tb * NSC;
          sc[SC_S] = S;
          sc[SC_Z] = z;
          sc[SC_ENT] = ent;
          sc[SC_NSQ] = nsq;
          sc[SC_C] = c;
          sc[SC_M] = asleep ? T(1) : T(0);
          sc[SC_AT] = at_prev;
        }
      }
    }
    transpose_batch(U.data(), U_fin + b0 * Hr, nb, r, H);
    transpose_batch(Ut.data(), Ut_fin + b0 * Hr, nb, r, H);
  };
  parallel_chunks(B, thread_count(d), chunk_size<T>(d), slice);
}

// ----------------------------------------------------------------------------------------- backward
// p: 0 x, 1 R, 2 C, 3 W, 4 V, 5 eta, 6 log_tau_sys, 7 log_surprise_scale, 8 h0 (B,H), 9 out (T,B,H),
//    10..16 saved (U checkpoints, U_target checkpoints, e, h_target, em_prev, ev_prev, scalars),
//    17 g_out (T,B,H), 18..23 gradients w.r.t. the final state (U, U_target, adaptive_tau, error_mean,
//    error_var, avg_surprise), 24..30 out: gradients w.r.t. the initial state (h, U, U_target, ...),
//    31 G_D = ∂L/∂drive (T,B,H), 32 G_E = ∂L/∂x through e (T,B,I), 33 G_XF = ∂L/∂(Vᵀx) (T,B,r),
//    34 g_eta (H), 35 g_log_tau_sys (H), 36 g_log_surprise_scale (1), 37 g_bias (H),
//    38 A = [h_prev | x | S e] (T,B,H+2I): the right operand of one product giving the gradients of
//    R, weight_in and W (dL/d[R | B | W] = G_Dᵀ A).
template <typename T>
void backward_impl(const Dims& d, const Config& k, void* const* p) {
  const int64_t Tn = d.T, B = d.B, I = d.I, H = d.H, r = d.r, K = d.K, Hr = H * r;
  const bool ltc = d.ltc;
  const T* x = static_cast<const T*>(p[0]);
  const T* R = static_cast<const T*>(p[1]);
  const T* C = static_cast<const T*>(p[2]);
  const T* Wm = static_cast<const T*>(p[3]);
  const T* V = static_cast<const T*>(p[4]);
  const T* eta = static_cast<const T*>(p[5]);
  const T* lts = static_cast<const T*>(p[6]);
  const T* lss = static_cast<const T*>(p[7]);
  const T* h0 = static_cast<const T*>(p[8]);
  const T* outs = static_cast<const T*>(p[9]);
  const T* ck_U = static_cast<const T*>(p[10]);
  const T* ck_Ut = static_cast<const T*>(p[11]);
  const T* sv_e = static_cast<const T*>(p[12]);
  const T* sv_ht = static_cast<const T*>(p[13]);
  const T* sv_em = static_cast<const T*>(p[14]);
  const T* sv_ev = static_cast<const T*>(p[15]);
  const T* sv_sc = static_cast<const T*>(p[16]);
  const T* g_out = static_cast<const T*>(p[17]);
  const T* gU_fin = static_cast<const T*>(p[18]);
  const T* gUt_fin = static_cast<const T*>(p[19]);
  const T* gat_fin = static_cast<const T*>(p[20]);
  const T* gem_fin = static_cast<const T*>(p[21]);
  const T* gev_fin = static_cast<const T*>(p[22]);
  const T* gas_fin = static_cast<const T*>(p[23]);
  T* gh = static_cast<T*>(p[24]);
  T* gU_out = static_cast<T*>(p[25]);
  T* gUt_out = static_cast<T*>(p[26]);
  T* gat = static_cast<T*>(p[27]);
  T* gem = static_cast<T*>(p[28]);
  T* gev = static_cast<T*>(p[29]);
  T* gas = static_cast<T*>(p[30]);
  T* G_D = static_cast<T*>(p[31]);
  T* G_E = static_cast<T*>(p[32]);
  T* G_XF = static_cast<T*>(p[33]);
  T* g_eta_out = static_cast<T*>(p[34]);
  T* g_lts_out = static_cast<T*>(p[35]);
  T* g_lss_out = static_cast<T*>(p[36]);
  T* g_b_out = static_cast<T*>(p[37]);
  T* A_out = static_cast<T*>(p[38]);
  const int64_t Aw = H + 2 * I;

  // [R | W], zero-padded to Np columns: one product gives Rᵀ g and Wᵀ g
  const int64_t Np = padded<T>(H + I);
  std::vector<T> RW(H * Np, T(0));
  for (int64_t j = 0; j < H; ++j) {
    std::memcpy(RW.data() + j * Np, R + j * H, sizeof(T) * H);
    std::memcpy(RW.data() + j * Np + H, Wm + j * I, sizeof(T) * I);
  }
  std::vector<T> tau_sys(H);
  for (int64_t j = 0; j < H; ++j) tau_sys[j] = std::exp(lts[j]);
  const T scale_ = std::exp(lss[0]);

  const int64_t nthreads = std::max<int64_t>(1, std::min(thread_count(d), B));
  // per-thread partial sums of the parameter gradients that add over the batch, reduced in order
  std::vector<std::vector<T>> part_eta(nthreads, std::vector<T>(H, T(0)));
  std::vector<std::vector<T>> part_lts(nthreads, std::vector<T>(H, T(0)));
  std::vector<std::vector<T>> part_b(nthreads, std::vector<T>(H, T(0)));
  std::vector<double> part_lss(nthreads, 0.0);

  auto slice = [&](int64_t slot, int64_t b0, int64_t b1) {
    const int64_t nb = b1 - b0;
    // constants as locals (see the forward)
    const T dt = T(k.dt), lam = T(k.lam), bta = T(k.beta), one_b = T(1.0 - k.beta);
    const T bs = T(k.beta_s), one_bs = T(1.0 - k.beta_s), tn = T(k.target_norm), kap = T(k.kappa);
    const T eps = T(kEps), eps2 = T(kEps * kEps), gamma = T(k.gamma), alpha = T(k.alpha), zeta = T(k.zeta);
    const T one_dl = T(1) - dt * lam, dl = dt * lam, scale = scale_;
    T* acc_eta = part_eta[slot].data();
    T* acc_lts = part_lts[slot].data();
    T* acc_b = part_b[slot].data();
    double acc_lss = 0.0;
    std::vector<T> gU(nb * Hr), gUt(nb * Hr);  // (nb, r, H)
    transpose_batch(gU_fin + b0 * Hr, gU.data(), nb, H, r);
    transpose_batch(gUt_fin + b0 * Hr, gUt.data(), nb, H, r);
    std::memcpy(gat + b0, gat_fin + b0, sizeof(T) * nb);
    std::memcpy(gem + b0 * I, gem_fin + b0 * I, sizeof(T) * nb * I);
    std::memcpy(gev + b0 * I, gev_fin + b0 * I, sizeof(T) * nb * I);
    std::memcpy(gas + b0, gas_fin + b0, sizeof(T) * nb);
    std::fill(gh + b0 * H, gh + b1 * H, T(0));
    // U' of the current segment, (K, nb, r, H), recomputed from its checkpoint; U, U_target work rows
    std::vector<T> seg(std::min(K, Tn) * nb * Hr), Uw(Hr), Utw(nb * Hr);
    std::vector<T> mm(nb * Np), gS_ltc(nb), ef(r), xf(r), gef(r), grec(r), ge(I), gd_(I), g_gh(H), ghv(H);

    for (int64_t t = Tn - 1; t >= 0; --t) {
      const int64_t s0 = t / K * K;
      if (t == Tn - 1 || t % K == K - 1) {  // entering segment [s0, t] from its end: recompute its U'
        const int64_t off = ((s0 / K) * B + b0) * Hr;
        std::memcpy(Utw.data(), ck_Ut + off, sizeof(T) * nb * Hr);
        for (int64_t lb = 0; lb < nb; ++lb) {
          const int64_t b = b0 + lb;
          std::memcpy(Uw.data(), ck_U + off + lb * Hr, sizeof(T) * Hr);
          T* utb = Utw.data() + lb * Hr;
          for (int64_t s = s0; s <= t; ++s) {
            const int64_t tb = s * B + b;
            const T* sc = sv_sc + tb * NSC;
            const T S = sc[SC_S], c = sc[SC_C];
            const bool asleep = sc[SC_M] != T(0);
            const T* h = s == 0 ? h0 + b * H : outs + (tb - B) * H;
            filter(sv_e + tb * I, V, I, r, ef.data());
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) ghv[j] = eta[j] * S * h[j];
            T* up = seg.data() + ((s - s0) * nb + lb) * Hr;
            for (int64_t q = 0; q < r; ++q) hebbian_row(Uw.data() + q * H, utb + q * H, ghv.data(), ef[q], dt, lam, up + q * H, H);
            if (s < t)
              for (int64_t q = 0; q < r; ++q)
                apply_row<T>(up + q * H, c, asleep, zeta, T(0), Uw.data() + q * H, utb + q * H, nullptr, H);
          }
        }
      }
      // A. output gradient through the liquid time constant and tanh → G_D[t]
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t tb = t * B + b;
        const T S = sv_sc[tb * NSC + SC_S];
        const T* __restrict h = t == 0 ? h0 + b * H : outs + (tb - B) * H;
        const T* __restrict ht = sv_ht + tb * H;
        const T* __restrict go = g_out + tb * H;
        T* __restrict ghb = gh + b * H;
        T* __restrict gd = G_D + tb * H;
        if (ltc) {
          const T D = T(1) + scale * S;
          T sum_tr = 0;
#pragma omp simd reduction(+ : sum_tr)
          for (int64_t j = 0; j < H; ++j) {
            const T ghn = go[j] + ghb[j];
            const T traw = tau_sys[j] / D;
            const bool inside = traw >= T(kTauMin) && traw <= T(kTauMax);
            const T te = traw < T(kTauMin) ? T(kTauMin) : (traw > T(kTauMax) ? T(kTauMax) : traw);
            const T a = dt / (te + dt);
            ghb[j] = (T(1) - a) * ghn;
            const T g_te = -ghn * (ht[j] - h[j]) * dt / ((te + dt) * (te + dt));
            const T g_tr = inside ? g_te * traw : T(0);
            acc_lts[j] += g_tr;
            sum_tr += g_tr / D;
            gd[j] = a * ghn * (T(1) - ht[j] * ht[j]);
          }
          const T g_D = -sum_tr;
          gS_ltc[b - b0] = g_D * scale;
          acc_lss += double(g_D * S) * double(scale);
        } else {
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T ghn = go[j] + ghb[j];
            ghb[j] = T(0);
            gd[j] = ghn * (T(1) - ht[j] * ht[j]);
          }
          gS_ltc[b - b0] = 0;
        }
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) acc_b[j] += gd[j];
        T* Ar = A_out + tb * Aw;
        std::memcpy(Ar, h, sizeof(T) * H);
        std::memcpy(Ar + H, x + tb * I, sizeof(T) * I);
        const T* e_t = sv_e + tb * I;
        for (int64_t i = 0; i < I; ++i) Ar[H + I + i] = S * e_t[i];
      }
      matmul<T>(G_D + (t * B + b0) * H, nb, H, RW.data(), Np, mm.data());
      // B. everything else, per sample
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t tb = t * B + b, lb = b - b0;
        const T* sc = sv_sc + tb * NSC;
        const T S = sc[SC_S], z = sc[SC_Z], ent = sc[SC_ENT], nsq = sc[SC_NSQ], c = sc[SC_C];
        const T m = sc[SC_M], at_prev = sc[SC_AT];
        const T* __restrict h = t == 0 ? h0 + b * H : outs + (tb - B) * H;
        const T* e = sv_e + tb * I;
        const T* emp = sv_em + tb * I;
        const T* evp = sv_ev + tb * I;
        const T* __restrict Up = seg.data() + ((t - s0) * nb + lb) * Hr;
        const T* __restrict gd = G_D + tb * H;
        const T* xt = x + tb * I;
        filter(xt, V, I, r, xf.data());
        const T* g_se = mm.data() + lb * Np + H;
        T* __restrict gUb = gU.data() + lb * Hr;
        T* __restrict gUtb = gUt.data() + lb * Hr;
        T* gemb = gem + b * I;
        T* gevb = gev + b * I;
        T* __restrict ghb = gh + b * H;

        // 10. statistics, 8. surprise-weighted error
        T gS = gS_ltc[lb] + bs * gas[b];
        gas[b] = one_bs * gas[b];
        T gn = bta * gat[b];
        T gat_new = one_b * gat[b];
        for (int64_t i = 0; i < I; ++i) {
          const T dd = e[i] - emp[i];
          gS += g_se[i] * e[i];
          ge[i] = S * g_se[i] + bta * gemb[i];
          gd_[i] = T(2) * bta * dd * gevb[i];
          gemb[i] = one_b * gemb[i];
          gevb[i] = one_b * gevb[i];
        }
        // 11. sleep and 8. the read-out of U_new: ∂L/∂U_new (into gU), ∂L/∂c, G_XF
        const T zm = zeta * m;
        T g_c = 0;
        for (int64_t q = 0; q < r; ++q) {
          const T* up = Up + q * H;
          T* gu = gUb + q * H;
          const T* gut = gUtb + q * H;
          const T xq = xf[q];
          T gx = 0, gcq = 0;
#pragma omp simd reduction(+ : gx, gcq)
          for (int64_t j = 0; j < H; ++j) {
            const T g = gu[j] + zm * gut[j] + gd[j] * xq;
            gu[j] = g;
            gx += (up[j] * c) * gd[j];
            gcq += g * up[j];
          }
          G_XF[tb * r + q] = gx;
          g_c += gcq;
        }
        // 7. homeostasis
        const T norm = std::sqrt(std::max(nsq, eps2));
        const T nc = std::max(norm, tn);
        const T g_norm = norm >= tn ? -kap * g_c * tn / (nc * nc) : T(0);
        const T g_nsq2 = nsq >= eps2 ? T(2) * (g_norm / (T(2) * norm)) : T(0);
        // 6. Hebbian write: ∂L/∂U' → ∂L/∂U, ∂L/∂U_target, ∂L/∂(gate·h), ∂L/∂(Vᵀe)
        filter(e, V, I, r, ef.data());
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          ghv[j] = eta[j] * S * h[j];
          g_gh[j] = T(0);
        }
        const T one_zm = T(1) - zm;
        for (int64_t q = 0; q < r; ++q) {
          const T* up = Up + q * H;
          T* gu = gUb + q * H;
          T* gut = gUtb + q * H;
          const T efq = ef[q];
          T gf = 0;
#pragma omp simd reduction(+ : gf)
          for (int64_t j = 0; j < H; ++j) {
            const T gup = gu[j] * c + g_nsq2 * up[j];
            gu[j] = one_dl * gup;
            gut[j] = one_zm * gut[j] + dl * gup;
            g_gh[j] += gup * efq;
            gf += gup * ghv[j];
          }
          gef[q] = gf * dt;
        }
        T gSg = 0;
#pragma omp simd reduction(+ : gSg)
        for (int64_t j = 0; j < H; ++j) {
          const T g = g_gh[j] * dt;  // ∂L/∂(gate_j h_j)
          const T g_gate = g * h[j];
          ghb[j] += g * (eta[j] * S);
          acc_eta[j] += g_gate * S;
          gSg += g_gate * eta[j];
        }
        gS += gSg;
        for (int64_t i = 0; i < I; ++i) {
          T acc = 0;
          for (int64_t q = 0; q < r; ++q) acc += gef[q] * V[i * r + q];
          ge[i] += acc;
        }
        // 5-3. surprise, threshold, entropy
        const T g_y = k.gating ? gS * S * (T(1) - S) / gamma : T(0);  // S = 1 without gating: a constant
        gn += g_y;
        const T g_thr = -g_y;
        gat_new += g_thr * (T(1) + alpha * T(clamp(ent, 0.0, 2.0)));
        gat[b] = gat_new;
        const T g_ent = (ent >= T(0) && ent <= T(2)) ? g_thr * at_prev * alpha : T(0);
        T vsum = 0;
        for (int64_t i = 0; i < I; ++i) vsum += evp[i];
        const T g_mv = T(0.5) * g_ent / (vsum / T(I) + eps);
        // 2. novelty
        const T g_q = gn / ((T(1) + z) * (T(1) + z)) / (T(2) * z);
        const T gqI = g_q / T(I);
        const T gmvI = g_mv / T(I);
        for (int64_t i = 0; i < I; ++i) {
          const T dd = e[i] - emp[i];
          const T w = T(1) / (evp[i] + eps);
          const T gdi = gd_[i] + T(2) * gqI * dd * w;
          gevb[i] += gmvI - gqI * dd * dd * w * w;
          ge[i] += gdi;
          gemb[i] -= gdi;
        }
        std::memcpy(G_E + tb * I, ge.data(), sizeof(T) * I);
        // 1. prediction: ∂L/∂(Uᵀh) = -Vᵀ g_e; ∂L/∂h; ∂L/∂U
        filter(ge.data(), V, I, r, grec.data());
        const T* ghR = mm.data() + lb * Np;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) ghb[j] += ghR[j];
        for (int64_t i = 0; i < I; ++i) {
          const T g = ge[i];
          const T* ci = C + i * H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) ghb[j] -= g * ci[j];
        }
        // U before step t: the checkpoint at a segment start, else c[t-1] U'[t-1] as the forward computed it
        const bool at_start = t == s0;
        const T* Uprev = at_start ? ck_U + ((s0 / K) * B + b) * Hr : Up - nb * Hr;
        const T cprev = at_start ? T(1) : sv_sc[(tb - B) * NSC + SC_C];
        for (int64_t q = 0; q < r; ++q) {
          const T* u = Uprev + q * H;
          T* gu = gUb + q * H;
          const T gq = -grec[q];
          if (at_start) {
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) {
              ghb[j] += u[j] * gq;
              gu[j] += h[j] * gq;
            }
          } else {
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) {
              ghb[j] += (u[j] * cprev) * gq;
              gu[j] += h[j] * gq;
            }
          }
        }
      }
    }
    transpose_batch(gU.data(), gU_out + b0 * Hr, nb, r, H);
    transpose_batch(gUt.data(), gUt_out + b0 * Hr, nb, r, H);
    part_lss[slot] += acc_lss;
  };
  parallel_chunks(B, nthreads, chunk_size<T>(d), slice);
  for (int64_t j = 0; j < H; ++j) {
    T se = 0, sl = 0, sb = 0;
    for (int64_t i = 0; i < nthreads; ++i) {
      se += part_eta[i][j];
      sl += part_lts[i][j];
      sb += part_b[i][j];
    }
    g_eta_out[j] = se;
    g_lts_out[j] = sl;
    g_b_out[j] = sb;
  }
  double lss_sum = 0.0;
  for (int64_t i = 0; i < nthreads; ++i) lss_sum += part_lss[i];
  g_lss_out[0] = T(lss_sum);
}

Config read_config(const double* cfg) {
  return Config{cfg[0], cfg[1], cfg[2], cfg[3], cfg[4], cfg[5], cfg[6], cfg[7], cfg[8], cfg[9], cfg[10], cfg[11] != 0.0};
}

}  // namespace

extern "C" {

// dims: T, B, I, H, r, save, ltc, K, threads; cfg: dt, λ, α, γ, β, β_s, target_norm, κ, ζ, min_sleep, log(2πe),
// surprise gating (1 or 0).
int dream_seq_abi_version() { return 6; }
void dream_seq_forward_f32(const int64_t* dims, const double* cfg, void* const* p) {
  forward_impl<float>(read_dims(dims), read_config(cfg), p);
}
void dream_seq_forward_f64(const int64_t* dims, const double* cfg, void* const* p) {
  forward_impl<double>(read_dims(dims), read_config(cfg), p);
}
void dream_seq_backward_f32(const int64_t* dims, const double* cfg, void* const* p) {
  backward_impl<float>(read_dims(dims), read_config(cfg), p);
}
void dream_seq_backward_f64(const int64_t* dims, const double* cfg, void* const* p) {
  backward_impl<double>(read_dims(dims), read_config(cfg), p);
}

}  // extern "C"
