// The context-cluster operator's similarity backward on CPU, one pass per point set.
//
// From the chosen similarities' gradient to those of the points, the centers (or, when the centers were pooled
// from the points, added into the points' own) and alpha and beta. In eager ATen these are some twenty
// kernels over [B, N], [B, N, M] and [B, N, D] tensors, each with its own allocation and, above ATen's grain
// size, its own thread wake-up; here one parallel loop over the sets does them. The forward stays ATen's:
// the assignment must round as the official code does (ties of saturated similarities), a gradient need not.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

// <x, y> in double over eight partial sums, element-wise across the eight (vectorisable without reordering
// any one sum; a single running sum would wait on each addition).
template <typename scalar_t>
double dot(const scalar_t* x, const scalar_t* y, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += static_cast<double>(x[i + j]) * y[i + j];
  for (; i < n; ++i) acc[0] += static_cast<double>(x[i]) * y[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Sets per task: keep a task to ~32k multiply-adds, so small inputs run on one thread.
int64_t grain_for(int64_t n, int64_t m, int64_t d) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, n * (m + 1) * d));
}

template <typename scalar_t>
void backward_kernel(
    const scalar_t* grad_sim, const scalar_t* sim, const scalar_t* cos_chosen, const scalar_t* p_len,
    const scalar_t* points, const scalar_t* c_hat, const scalar_t* c_len, const int64_t* assignment,
    const scalar_t* pool, bool pooled, int64_t B, int64_t N, int64_t M, int64_t D, scalar_t alpha, double eps,
    scalar_t* grad_points, scalar_t* grad_centers, double* grad_alpha_sets, double* grad_beta_sets) {
  at::parallel_for(0, B, grain_for(N, M, D), [&](int64_t b0, int64_t b1) {
    std::vector<scalar_t> g_hat(M * D), g_c(M * D);
    const scalar_t eps_t = static_cast<scalar_t>(eps);
    for (int64_t b = b0; b < b1; ++b) {
      const scalar_t* p = points + b * N * D;
      const scalar_t* ch = c_hat + b * M * D;
      scalar_t* gp = grad_points + b * N * D;
      std::fill(g_hat.begin(), g_hat.end(), static_cast<scalar_t>(0));
      double sum_alpha = 0.0, sum_beta = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t i = b * N + n, m = assignment[i];
        const scalar_t s = sim[i], cos = cos_chosen[i], len = p_len[i];
        const scalar_t logit_grad = grad_sim[i] * (s * (static_cast<scalar_t>(1) - s));
        sum_beta += logit_grad;
        sum_alpha += static_cast<double>(logit_grad * cos);
        const scalar_t den = std::max(len, eps_t);
        // d cos / d p = (c_hat - cos * p / |p|) / max(|p|, eps); clamp_min passes no gradient below eps
        const scalar_t tangential = (logit_grad * alpha) / den;
        const scalar_t radial = len >= eps_t ? -((tangential * cos) / den) : static_cast<scalar_t>(0);
        const scalar_t* pn = p + n * D;
        scalar_t* gpn = gp + n * D;
        for (int64_t d = 0; d < D; ++d) {
          g_hat[m * D + d] += tangential * pn[d];
          gpn[d] = tangential * ch[m * D + d] + radial * pn[d];
        }
      }
      grad_alpha_sets[b] = sum_alpha;
      grad_beta_sets[b] = sum_beta;
      for (int64_t m = 0; m < M; ++m) {
        const scalar_t len = c_len[b * M + m];
        const scalar_t radial =
            len >= eps_t ? static_cast<scalar_t>(dot(g_hat.data() + m * D, ch + m * D, D)) : static_cast<scalar_t>(0);
        const scalar_t den = std::max(len, eps_t);
        for (int64_t d = 0; d < D; ++d) g_c[m * D + d] = (g_hat[m * D + d] - ch[m * D + d] * radial) / den;
      }
      if (!pooled) {
        std::copy(g_c.begin(), g_c.end(), grad_centers + b * M * D);
        continue;
      }
      // the pooled centers' gradients spread back over the points they pool
      for (int64_t n = 0; n < N; ++n) {
        scalar_t* gpn = gp + n * D;
        for (int64_t m = 0; m < M; ++m) {
          const scalar_t w = pool != nullptr ? pool[m * N + n] : static_cast<scalar_t>(1.0 / N);
          if (w == 0) continue;
          for (int64_t d = 0; d < D; ++d) gpn[d] += w * g_c[m * D + d];
        }
      }
    }
  });
}

void check_input(const at::Tensor& t, const char* name, int64_t dim, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.dim() == dim && t.scalar_type() == dtype, name,
              " must be a contiguous ", dim, "-dim CPU tensor of ", dtype);
}

}  // namespace

// Returns grad_points [B, N, D] (with the pooled centers' gradients added when pooled), grad_centers [B, M, D]
// (empty when pooled), and the per-set sums of the logit gradient times cos (alpha) and alone (beta), [B].
std::vector<at::Tensor> similarity_backward(
    const at::Tensor& grad_sim, const at::Tensor& sim, const at::Tensor& cos_chosen, const at::Tensor& p_len,
    const at::Tensor& points, const at::Tensor& c_hat, const at::Tensor& c_len, const at::Tensor& assignment,
    const c10::optional<at::Tensor>& pool, bool pooled, double alpha, double eps) {
  const auto dtype = points.scalar_type();
  check_input(points, "points", 3, dtype);
  for (const auto* t : {&grad_sim, &sim, &cos_chosen, &p_len}) check_input(*t, "a [B, N] input", 2, dtype);
  check_input(assignment, "assignment", 2, at::kLong);
  check_input(c_hat, "c_hat", 3, dtype);
  check_input(c_len, "c_len", 3, dtype);
  if (pool) check_input(*pool, "pool", 2, dtype);
  const int64_t B = points.size(0), N = points.size(1), D = points.size(2), M = c_hat.size(1);
  auto grad_points = at::empty_like(points);
  auto grad_centers = pooled ? at::empty({0}, points.options()) : at::empty({B, M, D}, points.options());
  auto sums = at::empty({2, B}, points.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "similarity_backward", [&] {
    backward_kernel<scalar_t>(
        grad_sim.data_ptr<scalar_t>(), sim.data_ptr<scalar_t>(), cos_chosen.data_ptr<scalar_t>(),
        p_len.data_ptr<scalar_t>(), points.data_ptr<scalar_t>(), c_hat.data_ptr<scalar_t>(),
        c_len.data_ptr<scalar_t>(), assignment.data_ptr<int64_t>(), pool ? pool->data_ptr<scalar_t>() : nullptr,
        pooled, B, N, M, D, static_cast<scalar_t>(alpha), eps, grad_points.data_ptr<scalar_t>(),
        pooled ? nullptr : grad_centers.data_ptr<scalar_t>(), sums.data_ptr<double>(),
        sums.data_ptr<double>() + B);
  });
  return {grad_points, grad_centers, sums};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("similarity_backward", &similarity_backward);
}
