// pybind11 layer of the LV2 plugin host (cpp/core/lv2_host.hpp): catalogue, insert chains,
// delay lines and the time-domain mixer. Audio calls check their arrays, then release the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#ifdef LIVEDEMIX_HAVE_LV2
#include "lv2_host.hpp"
#endif

namespace py = pybind11;

#ifdef LIVEDEMIX_HAVE_LV2
using namespace livedemix;

namespace {

py::dict port_dict(const Lv2PortInfo& p) {
  py::dict d;
  d["index"] = p.index;
  d["symbol"] = p.symbol;
  d["name"] = p.name;
  d["kind"] = p.kind;
  d["direction"] = p.input ? "input" : (p.output ? "output" : "");
  if (p.kind == "control") {
    d["minimum"] = p.minimum;
    d["maximum"] = p.maximum;
    d["default"] = p.default_value;
    d["toggled"] = p.toggled;
    d["integer"] = p.integer;
    d["enumeration"] = p.enumeration;
    d["logarithmic"] = p.logarithmic;
    d["reports_latency"] = p.reports_latency;
  }
  d["optional"] = p.optional;
  return d;
}

py::dict plugin_dict(const Lv2PluginInfo& info) {
  py::dict d;
  d["uri"] = info.uri;
  d["name"] = info.name;
  d["class"] = info.class_label;
  d["bundle"] = info.bundle;
  d["audio_inputs"] = info.audio_inputs;
  d["audio_outputs"] = info.audio_outputs;
  d["has_latency"] = info.has_latency;
  d["required_features"] = info.required_features;
  d["unsupported"] = info.unsupported.empty() ? py::object(py::none()) : py::object(py::str(info.unsupported));
  py::list ports;
  for (const auto& p : info.ports) ports.append(port_dict(p));
  d["ports"] = ports;
  return d;
}

// A float32 (channels, n) array with contiguous rows; returns the row stride in floats.
std::ptrdiff_t block_stride(const py::array& a, int channels, const char* what) {
  const bool ok = py::isinstance<py::array_t<float>>(a) && a.dtype().num() == py::dtype::of<float>().num() &&
                  a.ndim() == 2 && a.shape(0) == channels &&
                  (a.shape(1) <= 1 || a.strides(1) == static_cast<py::ssize_t>(sizeof(float))) &&
                  a.strides(0) % static_cast<py::ssize_t>(sizeof(float)) == 0;
  if (!ok)
    throw py::value_error(std::string(what) + " must be a float32 array shaped (" + std::to_string(channels) +
                          ", n) with contiguous rows");
  return a.strides(0) / static_cast<py::ssize_t>(sizeof(float));
}

}  // namespace

void bind_plugins(py::module_& m) {
  py::object base = py::module_::import("livedemix.errors").attr("LivedemixError");
  static py::exception<PluginError> plugin_error(m, "PluginError", base.ptr());
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const PluginError& e) {
      PyErr_SetString(plugin_error.ptr(), e.what());
    }
  });

  m.attr("lv2_available") = true;
  m.def(
      "lv2_load_bundle", [](const std::string& dir) { Lv2World::instance().load_bundle(dir); }, py::arg("directory"),
      "Add one LV2 bundle directory (*.lv2) to the catalogue.");
  m.def("lv2_list", [] {
    std::vector<Lv2PluginInfo> all;
    {
      py::gil_scoped_release nogil;
      all = Lv2World::instance().list();
    }
    py::list out;
    for (const auto& i : all) out.append(plugin_dict(i));
    return out;
  });
  m.def(
      "lv2_has", [](const std::string& uri) { return Lv2World::instance().has(uri); }, py::arg("uri"));
  m.def(
      "lv2_info", [](const std::string& uri) { return plugin_dict(Lv2World::instance().info(uri)); }, py::arg("uri"));

  py::class_<InsertChain>(m, "InsertChain")
      .def(py::init<double, int, int>(), py::arg("sample_rate"), py::arg("channels") = 2, py::arg("max_block") = 4096)
      .def(
          "add", [](InsertChain& c, const std::string& uri) { return c.add(uri); }, py::arg("uri"),
          "Append a plugin (control thread, before activate); returns its slot index.")
      .def("__len__", &InsertChain::size)
      .def("activate", &InsertChain::activate, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("latency", &InsertChain::latency)
      .def_property_readonly("channels", &InsertChain::channels)
      .def_property_readonly("max_block", &InsertChain::max_block)
      .def_property("budget_fraction", &InsertChain::budget_fraction, &InsertChain::set_budget_fraction)
      .def(
          "process",
          [](InsertChain& c, py::array block) {
            const auto stride = block_stride(block, c.channels(), "block");
            if (!block.writeable()) throw py::value_error("block must be writeable (the chain works in place)");
            const int n = static_cast<int>(block.shape(1));
            if (n > c.max_block())
              throw py::value_error("block has " + std::to_string(n) + " samples but the chain's max_block is " +
                                    std::to_string(c.max_block()));
            auto* x = static_cast<float*>(block.mutable_data());
            py::gil_scoped_release nogil;
            c.process(x, stride, n);
          },
          py::arg("block"), "Run the chain in place on float32 (channels, n).")
      .def(
          "slot_info", [](InsertChain& c, int i) { return plugin_dict(c.slot(i).info()); }, py::arg("slot"))
      .def(
          "control_index", [](InsertChain& c, int i, const std::string& s) { return c.slot(i).control_index(s); },
          py::arg("slot"), py::arg("symbol"))
      .def(
          "set_control", [](InsertChain& c, int i, int port, float v) { c.slot(i).set_control(port, v); },
          py::arg("slot"), py::arg("port"), py::arg("value"))
      .def(
          "control", [](InsertChain& c, int i, int port) { return c.slot(i).control(port); }, py::arg("slot"),
          py::arg("port"))
      .def(
          "control_output", [](InsertChain& c, int i, int port) { return c.slot(i).control_output(port); },
          py::arg("slot"), py::arg("port"))
      .def(
          "set_bypass", [](InsertChain& c, int i, bool on) { c.slot(i).set_bypass(on); }, py::arg("slot"),
          py::arg("on"))
      .def(
          "bypassed", [](InsertChain& c, int i) { return c.slot(i).bypassed(); }, py::arg("slot"))
      .def(
          "faulted", [](InsertChain& c, int i) { return c.slot(i).faulted(); }, py::arg("slot"))
      .def(
          "clear_fault", [](InsertChain& c, int i) { c.slot(i).clear_fault(); }, py::arg("slot"))
      .def(
          "slot_latency", [](InsertChain& c, int i) { return c.slot(i).latency(); }, py::arg("slot"))
      .def(
          "slot_stats",
          [](InsertChain& c, int i) {
            const InsertSlot& s = c.slot(i);
            py::dict d;
            d["blocks"] = s.blocks();
            d["nonfinite_events"] = s.nonfinite_events();
            d["slow_events"] = s.slow_events();
            d["faulted"] = s.faulted();
            d["bypassed"] = s.bypassed();
            d["instances"] = s.instances();
            d["latency"] = s.latency();
            d["last_run_seconds"] = s.last_run_seconds();
            return d;
          },
          py::arg("slot"));

  py::class_<DelayLine>(m, "DelayLine")
      .def(py::init<int, int>(), py::arg("channels"), py::arg("delay"))
      .def_property_readonly("delay", &DelayLine::delay)
      .def("reset", &DelayLine::reset)
      .def(
          "process",
          [](DelayLine& d, py::array block) {
            const auto stride = block_stride(block, static_cast<int>(block.ndim() == 2 ? block.shape(0) : 0), "block");
            if (!block.writeable()) throw py::value_error("block must be writeable (the delay works in place)");
            const int n = static_cast<int>(block.shape(1));
            auto* x = static_cast<float*>(block.mutable_data());
            py::gil_scoped_release nogil;
            d.process(x, stride, n);
          },
          py::arg("block"));

  py::class_<TimeMixer>(m, "TimeMixer")
      .def(py::init<int, int, int>(), py::arg("sources"), py::arg("buses"), py::arg("ramp_samples"))
      .def("set_gain", &TimeMixer::set_gain, py::arg("bus"), py::arg("source"), py::arg("gain"))
      .def("target_gain", &TimeMixer::target_gain, py::arg("bus"), py::arg("source"))
      .def("snap_to_targets", &TimeMixer::snap_to_targets)
      .def(
          "mix_add",
          [](TimeMixer& t, int bus, int source, py::array src, py::array dst) {
            const int C = static_cast<int>(dst.ndim() == 2 ? dst.shape(0) : 0);
            const auto ds = block_stride(dst, C, "dst");
            const auto ss = block_stride(src, C, "src");
            if (src.shape(1) != dst.shape(1)) throw py::value_error("src and dst must have the same length");
            if (!dst.writeable()) throw py::value_error("dst must be writeable");
            const int n = static_cast<int>(dst.shape(1));
            const auto* s = static_cast<const float*>(src.data());
            auto* d = static_cast<float*>(dst.mutable_data());
            py::gil_scoped_release nogil;
            t.mix_add(bus, source, s, ss, d, ds, C, n);
          },
          py::arg("bus"), py::arg("source"), py::arg("src"), py::arg("dst"));
}

#else

void bind_plugins(py::module_& m) { m.attr("lv2_available") = false; }

#endif
