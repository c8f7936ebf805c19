// pybind11 layer of the native core: livedemix._core.
//
// Every array argument is checked here (dtype, shape, channel count, contiguity) and a wrong
// one raises ValueError naming what was expected; the C++ objects behind never see bad
// shapes. Each processing call releases the GIL around the C++ work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <sstream>
#include <string>

#include "fft.hpp"
#include "ring_buffer.hpp"
#include "stem_mixer.hpp"
#include "stft.hpp"
#include "window.hpp"

namespace py = pybind11;
using namespace livedemix;

void bind_phase_recovery(py::module_& m);
void bind_plugins(py::module_& m);

namespace {

std::string describe(const py::array& a) {
  std::ostringstream s;
  s << py::str(a.dtype()).cast<std::string>() << " shaped (";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

[[noreturn]] void fail(const std::string& what, const std::string& expected, const py::array& got) {
  throw py::value_error(what + " must be " + expected + "; got " + describe(got));
}

// dtype checks run on every audio call: compare numpy type numbers instead of building
// dtype objects (the checks below allocate nothing unless they fail).
bool is_float32(const py::array& a) {
  return py::detail::array_descriptor_proxy(py::detail::array_proxy(a.ptr())->descr)->type_num ==
         py::detail::npy_api::NPY_FLOAT_;
}
bool is_complex64(const py::array& a) {
  return py::detail::array_descriptor_proxy(py::detail::array_proxy(a.ptr())->descr)->type_num ==
         py::detail::npy_api::NPY_CFLOAT_;
}

// A (channels, n) float32 block whose rows are contiguous; returns its row stride in floats.
py::ssize_t check_block(const py::array& a, int channels, const char* what) {
  if (!is_float32(a) || a.ndim() != 2 || a.shape(0) != channels ||
      (a.shape(1) > 1 && a.strides(1) != static_cast<py::ssize_t>(sizeof(float))) ||
      a.strides(0) % static_cast<py::ssize_t>(sizeof(float)) != 0)
    fail(what,
         "a float32 array shaped (" + std::to_string(channels) +
             ", n) with contiguous rows (numpy.ascontiguousarray makes one)",
         a);
  return a.strides(0) / static_cast<py::ssize_t>(sizeof(float));
}

// A C-contiguous complex64 array of the given shape; a negative entry means "any length".
template <size_t N>
void check_frames(const py::array& a, const py::ssize_t (&shape)[N], const char* what, const char* names) {
  bool ok = is_complex64(a) && a.ndim() == static_cast<py::ssize_t>(N) && (a.flags() & py::array::c_style);
  for (size_t i = 0; ok && i < N; ++i) ok = shape[i] < 0 || a.shape(i) == shape[i];
  if (!ok) {
    std::ostringstream e;
    e << "a C-contiguous complex64 array shaped (";
    for (size_t i = 0; i < N; ++i)
      e << (i ? ", " : "") << (shape[i] < 0 ? std::string(1, names[i]) : std::to_string(shape[i]));
    e << ")";
    fail(what, e.str(), a);
  }
}

void check_writable(const py::array& a, const char* what) {
  if (!a.writeable()) throw py::value_error(std::string(what) + " must be a writable array");
}

StftConfig make_config(int n_fft, int hop, const std::string& window) {
  StftConfig c;
  c.n_fft = n_fft;
  c.hop = hop;
  try {
    c.window = parse_window_type(window);
    validate(c);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  return c;
}

py::array_t<float> to_numpy(const std::vector<float>& v) {
  py::array_t<float> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "livedemix native DSP core (C++17): streaming STFT/ISTFT, ring buffer, STFT-domain mixer, phase recovery.";

  m.def("build_info", [] {
    py::dict d;
    d["compiler"] = std::string(__VERSION__);
    d["cxx_standard"] = static_cast<long>(__cplusplus);
    d["flags"] = std::string(LIVEDEMIX_BUILD_FLAGS);
#ifdef NDEBUG
    d["assertions"] = false;
#else
    d["assertions"] = true;
#endif
    d["fft"] = std::string(RealFft::backend());
    return d;
  });

  py::class_<StftConfig>(m, "StftConfig")
      .def(py::init(&make_config), py::arg("n_fft") = 1024, py::arg("hop") = 256, py::arg("window") = "hann")
      .def_readonly("n_fft", &StftConfig::n_fft)
      .def_readonly("hop", &StftConfig::hop)
      .def_property_readonly("window", [](const StftConfig& c) { return window_type_name(c.window); })
      .def_property_readonly("bins", &StftConfig::bins)
      .def_property_readonly("synthesis_length", &StftConfig::synthesis_length)
      .def_property_readonly("latency_samples", &StftConfig::latency_samples)
      .def("windows",
           [](const StftConfig& c) {
             auto w = make_windows(c);
             return py::make_tuple(to_numpy(w.analysis), to_numpy(w.synthesis));
           })
      .def("__repr__", [](const StftConfig& c) {
        return "StftConfig(n_fft=" + std::to_string(c.n_fft) + ", hop=" + std::to_string(c.hop) + ", window='" +
               window_type_name(c.window) + "')";
      });

  py::class_<StftAnalyzer>(m, "StftAnalyzer")
      .def(py::init([](const StftConfig& c, int channels, int max_block) {
             if (channels < 1) throw py::value_error("channels must be >= 1");
             if (max_block < 1) throw py::value_error("max_block must be >= 1");
             auto a = std::make_unique<StftAnalyzer>(c, channels);
             a->prepare(max_block);
             return a;
           }),
           py::arg("config"), py::arg("channels") = 2, py::arg("max_block") = 4096)
      .def(
          "prepare",
          [](StftAnalyzer& a, int max_block) {
            if (max_block < 1) throw py::value_error("max_block must be >= 1");
            a.prepare(max_block);
          },
          py::arg("max_block"))
      .def(
          "process_into",
          [](StftAnalyzer& a, py::array block, py::array out) {
            const auto stride = check_block(block, a.channels(), "block");
            const int n = static_cast<int>(block.shape(1));
            if (n > a.max_block())
              throw py::value_error("block has " + std::to_string(n) + " samples but max_block is " +
                                    std::to_string(a.max_block()) + ": call prepare() with a larger max_block");
            const py::ssize_t shape[3] = {a.max_frames_per_block(), a.channels(), a.bins()};
            check_frames(out, shape, "out", "nCF");
            check_writable(out, "out");
            const float* x = static_cast<const float*>(block.data());
            auto* o = static_cast<cfloat*>(out.mutable_data());
            py::gil_scoped_release nogil;
            return a.process(x, stride, n, o);
          },
          py::arg("block"), py::arg("out"))
      .def_property_readonly("max_block", &StftAnalyzer::max_block)
      .def_property_readonly("max_frames_per_block", &StftAnalyzer::max_frames_per_block)
      .def_property_readonly("channels", &StftAnalyzer::channels)
      .def_property_readonly("bins", &StftAnalyzer::bins)
      .def_property_readonly("config", &StftAnalyzer::config)
      .def_property_readonly("latency_samples", &StftAnalyzer::latency_samples)
      .def_property_readonly("nonfinite_blocks", &StftAnalyzer::nonfinite_blocks)
      .def_property_readonly("frames_emitted", &StftAnalyzer::frames_emitted)
      .def("reset", &StftAnalyzer::reset);

  py::class_<StftSynthesizer>(m, "StftSynthesizer")
      .def(py::init([](const StftConfig& c, int channels, int max_block) {
             if (channels < 1) throw py::value_error("channels must be >= 1");
             if (max_block < 1) throw py::value_error("max_block must be >= 1");
             auto s = std::make_unique<StftSynthesizer>(c, channels);
             s->prepare(max_block);
             return s;
           }),
           py::arg("config"), py::arg("channels") = 2, py::arg("max_block") = 4096)
      .def(
          "prepare",
          [](StftSynthesizer& s, int max_block) {
            if (max_block < 1) throw py::value_error("max_block must be >= 1");
            s.prepare(max_block);
          },
          py::arg("max_block"))
      .def(
          "push",
          [](StftSynthesizer& s, py::array frames) {
            const py::ssize_t shape[3] = {-1, s.channels(), s.config().bins()};
            check_frames(frames, shape, "frames", "nCF");
            const int n = static_cast<int>(frames.shape(0));
            const auto* f = static_cast<const cfloat*>(frames.data());
            const size_t stride = static_cast<size_t>(s.channels()) * s.config().bins();
            int pushed = 0;
            {
              py::gil_scoped_release nogil;
              for (int i = 0; i < n; ++i) pushed += s.push_frame(f + i * stride) ? 1 : 0;
            }
            return pushed;
          },
          py::arg("frames"))
      .def(
          "pull_into",
          [](StftSynthesizer& s, py::array out) {
            const auto stride = check_block(out, s.channels(), "out");
            check_writable(out, "out");
            const int n = static_cast<int>(out.shape(1));
            auto* y = static_cast<float*>(out.mutable_data());
            py::gil_scoped_release nogil;
            s.pull(y, stride, n);
          },
          py::arg("out"))
      .def_property_readonly("available", &StftSynthesizer::available)
      .def_property_readonly("max_block", &StftSynthesizer::max_block)
      .def_property_readonly("channels", &StftSynthesizer::channels)
      .def_property_readonly("config", &StftSynthesizer::config)
      .def_property_readonly("latency_samples", &StftSynthesizer::latency_samples)
      .def_property_readonly("nonfinite_frames", &StftSynthesizer::nonfinite_frames)
      .def_property_readonly("underflows", &StftSynthesizer::underflows)
      .def_property_readonly("overflows", &StftSynthesizer::overflows)
      .def("reset", &StftSynthesizer::reset);

  py::class_<AudioRingBuffer>(m, "AudioRingBuffer")
      .def(py::init<int, int>(), py::arg("channels"), py::arg("capacity"))
      .def(
          "push",
          [](AudioRingBuffer& r, py::array block) {
            const auto stride = check_block(block, r.channels(), "block");
            const int n = static_cast<int>(block.shape(1));
            const float* x = static_cast<const float*>(block.data());
            py::gil_scoped_release nogil;
            return r.push(x, stride, n);
          },
          py::arg("block"))
      .def(
          "pop_into",
          [](AudioRingBuffer& r, py::array out) {
            const auto stride = check_block(out, r.channels(), "out");
            check_writable(out, "out");
            const int n = static_cast<int>(out.shape(1));
            auto* y = static_cast<float*>(out.mutable_data());
            py::gil_scoped_release nogil;
            return r.pop(y, stride, n);
          },
          py::arg("out"))
      .def_property_readonly("available_read", &AudioRingBuffer::available_read)
      .def_property_readonly("available_write", &AudioRingBuffer::available_write)
      .def_property_readonly("channels", &AudioRingBuffer::channels)
      .def_property_readonly("capacity", &AudioRingBuffer::capacity)
      .def("reset", &AudioRingBuffer::reset);

  py::class_<StemMixer>(m, "StemMixer")
      .def(py::init([](int stems, int buses, int channels, int bins, int ramp_frames) {
             try {
               return std::make_unique<StemMixer>(stems, buses, channels, bins, ramp_frames);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("stems"), py::arg("buses"), py::arg("channels"), py::arg("bins"), py::arg("ramp_frames") = 4)
      .def(
          "set_gain",
          [](StemMixer& mx, int bus, int stem, float g) {
            if (bus < 0 || bus >= mx.buses())
              throw py::value_error("bus " + std::to_string(bus) + " does not exist: use 0.." +
                                    std::to_string(mx.buses() - 1));
            if (stem < 0 || stem >= mx.stems())
              throw py::value_error("stem " + std::to_string(stem) + " does not exist: use 0.." +
                                    std::to_string(mx.stems() - 1));
            if (!std::isfinite(g)) throw py::value_error("gain must be a finite number");
            mx.set_gain(bus, stem, g);
          },
          py::arg("bus"), py::arg("stem"), py::arg("gain"))
      .def("target_gain", &StemMixer::target_gain, py::arg("bus"), py::arg("stem"))
      .def("current_gain", &StemMixer::current_gain, py::arg("bus"), py::arg("stem"))
      .def("snap_to_targets", &StemMixer::snap_to_targets)
      .def(
          "process_into",
          [](StemMixer& mx, py::array stems, py::array out) {
            const py::ssize_t stems_shape[3] = {mx.stems(), mx.channels(), mx.bins()};
            const py::ssize_t out_shape[3] = {mx.buses(), mx.channels(), mx.bins()};
            check_frames(stems, stems_shape, "stems", "JCF");
            check_frames(out, out_shape, "out", "BCF");
            check_writable(out, "out");
            const auto* s = static_cast<const cfloat*>(stems.data());
            auto* o = static_cast<cfloat*>(out.mutable_data());
            py::gil_scoped_release nogil;
            mx.process(s, o);
          },
          py::arg("stems"), py::arg("out"))
      .def_property_readonly("stems", &StemMixer::stems)
      .def_property_readonly("buses", &StemMixer::buses)
      .def_property_readonly("channels", &StemMixer::channels)
      .def_property_readonly("bins", &StemMixer::bins)
      .def_property_readonly("ramp_frames", &StemMixer::ramp_frames);

  py::class_<RealFft>(m, "RealFft")
      .def(py::init([](int n) {
             try {
               return std::make_unique<RealFft>(n);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("n"))
      .def("forward",
           [](RealFft& f, py::array_t<float, py::array::c_style | py::array::forcecast> x) {
             if (x.ndim() != 1 || x.shape(0) != f.size())
               throw py::value_error("input must have " + std::to_string(f.size()) + " samples");
             py::array_t<std::complex<float>> out(f.bins());
             f.forward(x.data(), reinterpret_cast<cfloat*>(out.mutable_data()));
             return out;
           })
      .def("inverse",
           [](RealFft& f, py::array_t<std::complex<float>, py::array::c_style | py::array::forcecast> X) {
             if (X.ndim() != 1 || X.shape(0) != f.bins())
               throw py::value_error("input must have " + std::to_string(f.bins()) + " bins");
             py::array_t<float> out(f.size());
             f.inverse(reinterpret_cast<const cfloat*>(X.data()), out.mutable_data());
             return out;
           })
      .def_property_readonly("size", &RealFft::size);

  bind_phase_recovery(m);
  bind_plugins(m);
}
