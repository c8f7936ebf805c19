// Python bindings of the phase-recovery stage: class `PhaseRecovery` in livedemix._core.
//
// Arrays are taken as they are (no conversion, no copy): complex64 / float32, C-contiguous,
// with the exact shapes below; anything else raises ValueError naming what was expected.
// The GIL is released while the C++ code runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <complex>
#include <sstream>
#include <string>
#include <vector>

#include "bessel.hpp"
#include "phase_recovery.hpp"

namespace py = pybind11;
using livedemix::PhaseMode;
using livedemix::PhaseRecovery;
using livedemix::PhaseRecoveryOptions;

namespace {

std::string shape_str(const std::vector<py::ssize_t>& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  if (s.size() == 1) o << ",";
  o << ")";
  return o.str();
}

// Checks dtype, C-contiguity, shape (-1 = any) and writability; raises ValueError otherwise.
void check_array(const py::array& a, const py::dtype& dt, const char* dtname, const std::vector<py::ssize_t>& shape,
                 const char* name, bool writable) {
  std::vector<py::ssize_t> got(a.shape(), a.shape() + a.ndim());
  std::vector<py::ssize_t> want = shape;
  bool ok_shape = got.size() == want.size();
  for (size_t i = 0; ok_shape && i < want.size(); ++i) {
    if (want[i] < 0) want[i] = got[i];
    ok_shape = got[i] == want[i];
  }
  const bool ok_dtype = a.dtype().is(dt);
  const bool ok_contig = (a.flags() & py::array::c_style) != 0;
  const bool ok_write = !writable || a.writeable();
  if (ok_shape && ok_dtype && ok_contig && ok_write) return;
  std::ostringstream o;
  o << name << " must be a C-contiguous " << dtname << (writable ? " writable" : "") << " array of shape ";
  std::vector<py::ssize_t> expect = shape;
  std::ostringstream es;
  es << "(";
  for (size_t i = 0; i < expect.size(); ++i) {
    es << (i ? ", " : "");
    if (expect[i] < 0)
      es << "frames";
    else
      es << expect[i];
  }
  es << ")";
  o << es.str() << "; got a " << (ok_contig ? "" : "non-contiguous ") << (ok_write ? "" : "read-only ")
    << std::string(py::str(a.dtype())) << " array of shape " << shape_str(got);
  if (!ok_dtype || !ok_contig) o << " (convert with numpy.ascontiguousarray(a, dtype=numpy." << dtname << "))";
  if (!ok_write) o << " (pass a writable array, e.g. numpy.empty_like(out))";
  throw py::value_error(o.str());
}

py::dtype cdt() { return py::dtype::of<std::complex<float>>(); }
py::dtype fdt() { return py::dtype::of<float>(); }

// process_frames and unwrap_frames share their signature and checks: (T, C, F) mixture
// frames and (T, J, C, F) magnitudes in, (T, J, C, F) out, the loop in C++ without the GIL.
template <void (PhaseRecovery::*Method)(const std::complex<float>*, const float*, std::complex<float>*, int)>
py::array frames_call(PhaseRecovery& self, const py::array& X, const py::array& V, py::array& out) {
  const py::ssize_t J = self.n_stems(), C = self.channels(), F = self.bins();
  check_array(X, cdt(), "complex64", {-1, C, F}, "X", false);
  const py::ssize_t T = X.shape(0);
  check_array(V, fdt(), "float32", {T, J, C, F}, "V", false);
  check_array(out, cdt(), "complex64", {T, J, C, F}, "out", true);
  const auto* x = static_cast<const std::complex<float>*>(X.data());
  const auto* v = static_cast<const float*>(V.data());
  auto* o = static_cast<std::complex<float>*>(out.mutable_data());
  {
    py::gil_scoped_release release;
    (self.*Method)(x, v, o, static_cast<int>(T));
  }
  return out;
}

}  // namespace

static void check_mask_power(float p) {
  if (!(p >= 0.25f && p <= 8.f))
    throw py::value_error("mask_power must be a number in [0.25, 8] (2 = Wiener, 1 = magnitude ratio mask)");
}

void bind_phase_recovery(py::module_& m) {
  py::class_<PhaseRecovery>(m, "PhaseRecovery",
                            "Causal phase recovery and mixture-consistent stem reconstruction "
                            "(see livedemix.phase.PhaseRecovery for the documented wrapper).")
      .def(py::init([](int n_stems, int channels, int n_fft, int hop, const std::string& mode, int n_iter, float kappa,
                       float peak_db, float onset_floor, float onset_ratio, float onset_smoothing, float mask_power) {
             if (n_iter < 1) throw py::value_error("n_iter must be at least 1");
             if (!(kappa >= 0.f)) throw py::value_error("kappa must be a number >= 0");
             check_mask_power(mask_power);
             PhaseRecoveryOptions o;
             try {
               o.mode = livedemix::parse_phase_mode(mode);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
             o.n_iter = n_iter;
             o.kappa = kappa;
             o.peak_db = peak_db;
             o.onset_floor = onset_floor;
             o.onset_ratio = onset_ratio;
             o.onset_smoothing = onset_smoothing;
             o.mask_power = mask_power;
             try {
               return new PhaseRecovery(n_stems, channels, n_fft, hop, o);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("n_stems"), py::arg("channels"), py::arg("n_fft"), py::arg("hop"), py::arg("mode") = "pu-iter",
           py::arg("n_iter") = PhaseRecoveryOptions().n_iter, py::arg("kappa") = PhaseRecoveryOptions().kappa,
           py::arg("peak_db") = PhaseRecoveryOptions().peak_db,
           py::arg("onset_floor") = PhaseRecoveryOptions().onset_floor,
           py::arg("onset_ratio") = PhaseRecoveryOptions().onset_ratio,
           py::arg("onset_smoothing") = PhaseRecoveryOptions().onset_smoothing,
           py::arg("mask_power") = PhaseRecoveryOptions().mask_power)
      .def(
          "process",
          [](PhaseRecovery& self, const py::array& X, const py::array& V, py::array& out) {
            const py::ssize_t J = self.n_stems(), C = self.channels(), F = self.bins();
            check_array(X, cdt(), "complex64", {C, F}, "X", false);
            check_array(V, fdt(), "float32", {J, C, F}, "V", false);
            check_array(out, cdt(), "complex64", {J, C, F}, "out", true);
            const auto* x = static_cast<const std::complex<float>*>(X.data());
            const auto* v = static_cast<const float*>(V.data());
            auto* o = static_cast<std::complex<float>*>(out.mutable_data());
            {
              py::gil_scoped_release release;
              self.process(x, v, o);
            }
            return out;
          },
          py::arg("X"), py::arg("V"), py::arg("out"),
          "One frame: X complex64 (C, F), V float32 (J, C, F) -> out complex64 (J, C, F), in place.")
      .def("process_frames", &frames_call<&PhaseRecovery::process_frames>, py::arg("X"), py::arg("V"), py::arg("out"),
           "Consecutive frames: X complex64 (T, C, F), V float32 (T, J, C, F) -> out (T, J, C, F).")
      .def("unwrap_frames", &frames_call<&PhaseRecovery::unwrap_frames>, py::arg("X"), py::arg("V"), py::arg("out"),
           "Phase unwrapping alone (not mixture-consistent): out_j = V_j e^{i phi_j}; X gives the "
           "phase at onsets and at the first frame. Shapes as process_frames.")
      .def("reset", [](PhaseRecovery& self) { self.reset(); })
      .def(
          "_set_allow_avx2",
          [](PhaseRecovery& self, bool allow) {
            self.set_allow_avx2(allow);
            self.prepare(self.n_stems(), self.channels(), self.n_fft(), self.hop());
          },
          py::arg("allow"), "Testing: allow/forbid the AVX2 kernel (re-prepares, i.e. resets).")
      .def_property_readonly("_uses_avx2", &PhaseRecovery::uses_avx2)
      .def_property(
          "mode", [](const PhaseRecovery& self) { return livedemix::phase_mode_name(self.mode()); },
          [](PhaseRecovery& self, const std::string& name) {
            try {
              self.set_mode(livedemix::parse_phase_mode(name));
            } catch (const std::invalid_argument& e) {
              throw py::value_error(e.what());
            }
          })
      .def_property("n_iter", &PhaseRecovery::n_iter,
                    [](PhaseRecovery& self, int n) {
                      if (n < 1) throw py::value_error("n_iter must be at least 1");
                      self.set_n_iter(n);
                    })
      .def_property("kappa", &PhaseRecovery::kappa,
                    [](PhaseRecovery& self, float k) {
                      if (!(k >= 0.f)) throw py::value_error("kappa must be a number >= 0");
                      self.set_kappa(k);
                    })
      .def_property("mask_power", &PhaseRecovery::mask_power,
                    [](PhaseRecovery& self, float p) {
                      check_mask_power(p);
                      self.set_mask_power(p);
                    })
      .def_property_readonly("n_stems", &PhaseRecovery::n_stems)
      .def_property_readonly("channels", &PhaseRecovery::channels)
      .def_property_readonly("n_fft", &PhaseRecovery::n_fft)
      .def_property_readonly("hop", &PhaseRecovery::hop)
      .def_property_readonly("bins", &PhaseRecovery::bins)
      .def_property_readonly("options",
                             [](const PhaseRecovery& self) {
                               const auto& o = self.options();
                               py::dict d;
                               d["mode"] = livedemix::phase_mode_name(o.mode);
                               d["n_iter"] = o.n_iter;
                               d["kappa"] = o.kappa;
                               d["mask_power"] = o.mask_power;
                               d["peak_db"] = o.peak_db;
                               d["onset_floor"] = o.onset_floor;
                               d["onset_ratio"] = o.onset_ratio;
                               d["onset_smoothing"] = o.onset_smoothing;
                               return d;
                             })
      .def_property_readonly("stats",
                             [](const PhaseRecovery& self) {
                               const auto& s = self.stats();
                               py::dict d;
                               d["frames"] = s.frames;
                               d["nonfinite_mixture"] = s.nonfinite_mixture;
                               d["nonfinite_magnitude"] = s.nonfinite_magnitude;
                               d["negative_magnitude"] = s.negative_magnitude;
                               d["onsets"] = s.onsets;
                               return d;
                             })
      .def_static(
          "bessel_ratios",
          [](double kappa) {
            const auto r = livedemix::bessel_ratios(kappa);
            return py::make_tuple(r.r1, r.r2);
          },
          py::arg("kappa"), "(I1(kappa)/I0(kappa), I2(kappa)/I0(kappa)) as used by the anisotropic mode.");
}
