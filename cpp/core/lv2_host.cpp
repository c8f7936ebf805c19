#include "lv2_host.hpp"

#include <lilv/lilv.h>
#include <lv2/atom/atom.h>
#include <lv2/buf-size/buf-size.h>
#include <lv2/core/lv2.h>
#include <lv2/options/options.h>
#include <lv2/parameters/parameters.h>
#include <lv2/port-props/port-props.h>
#include <lv2/urid/urid.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define LD_LV2_MXCSR 1
#endif

namespace livedemix {

namespace {
// Plugins run with denormals flushed to zero (FTZ + DAZ), as Ardour and Carla run them: a
// reverb's decaying tail would otherwise cost up to ~100x per sample. The caller's
// floating-point state is restored afterwards.
struct PluginDenormalGuard {
#ifdef LD_LV2_MXCSR
  unsigned int saved;
  PluginDenormalGuard() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }
  ~PluginDenormalGuard() { _mm_setcsr(saved); }
#endif
};

// lilv reports a broken bundle in the LV2 path (e.g. the folder Debian's avldrums.lv2-soundfont
// installs under /usr/lib/lv2 without a manifest.ttl) on stderr, and cannot be told not to: on a
// user's machine those lines would land in the middle of livedemix's one-sentence errors. While
// the world loads (once per process, never on the audio path) stderr goes to a temporary file,
// whose text is kept for diagnosis instead.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    tmp_ = std::tmpfile();
    if (!tmp_) return;
    saved_ = dup(2);
    if (saved_ < 0 || dup2(fileno(tmp_), 2) < 0) {
      if (saved_ >= 0) close(saved_);
      std::fclose(tmp_);
      tmp_ = nullptr;
    }
  }
  ~StderrCapture() { finish(); }
  std::string finish() {
    std::string text;
    if (!tmp_) return text;
    std::fflush(stderr);
    dup2(saved_, 2);
    close(saved_);
    std::rewind(tmp_);
    char buf[4096];
    size_t n;
    while (text.size() < 65536 && (n = std::fread(buf, 1, sizeof buf, tmp_)) > 0) text.append(buf, n);
    std::fclose(tmp_);
    tmp_ = nullptr;
    return text;
  }

 private:
  std::FILE* tmp_ = nullptr;
  int saved_ = -1;
};
}  // namespace

// ---- world ------------------------------------------------------------------------------

struct Lv2World::Impl {
  LilvWorld* world = nullptr;
  std::string load_messages;  // what lilv printed while loading the LV2 path (broken bundles)
  LilvNode *audio = nullptr, *control = nullptr, *input = nullptr, *output = nullptr, *atom = nullptr, *cv = nullptr,
           *latency = nullptr, *toggled = nullptr, *integer = nullptr, *enumeration = nullptr, *logarithmic = nullptr,
           *optional = nullptr;

  // URID map shared by every instance (plugins map URIs at instantiation).
  std::mutex urid_mutex;
  std::unordered_map<std::string, LV2_URID> ids;
  std::vector<std::string> uris;  // id - 1 → URI
  LV2_URID_Map map{this, &Impl::map_uri};
  LV2_URID_Unmap unmap{this, &Impl::unmap_uri};
  LV2_Feature map_feature{LV2_URID__map, &map};
  LV2_Feature unmap_feature{LV2_URID__unmap, &unmap};
  LV2_Feature bounded_feature{LV2_BUF_SIZE__boundedBlockLength, nullptr};

  static LV2_URID map_uri(LV2_URID_Map_Handle h, const char* uri) {
    auto* self = static_cast<Impl*>(h);
    std::lock_guard<std::mutex> lock(self->urid_mutex);
    auto it = self->ids.find(uri);
    if (it != self->ids.end()) return it->second;
    self->uris.emplace_back(uri);
    const LV2_URID id = static_cast<LV2_URID>(self->uris.size());
    self->ids.emplace(uri, id);
    return id;
  }
  static const char* unmap_uri(LV2_URID_Unmap_Handle h, LV2_URID id) {
    auto* self = static_cast<Impl*>(h);
    std::lock_guard<std::mutex> lock(self->urid_mutex);
    return (id >= 1 && id <= self->uris.size()) ? self->uris[id - 1].c_str() : nullptr;
  }
  LV2_URID id(const char* uri) { return map_uri(this, uri); }

  const LilvPlugin* find(const std::string& uri) {
    LilvNode* node = lilv_new_uri(world, uri.c_str());
    const LilvPlugin* p = node ? lilv_plugins_get_by_uri(lilv_world_get_all_plugins(world), node) : nullptr;
    lilv_node_free(node);
    return p;
  }

  Lv2PluginInfo describe(const LilvPlugin* p);
};

static bool host_supports(const std::string& feature) {
  static const char* supported[] = {LV2_URID__map,
                                    LV2_URID__unmap,
                                    LV2_OPTIONS__options,
                                    LV2_BUF_SIZE__boundedBlockLength,
                                    LV2_BUF_SIZE__coarseBlockLength,
                                    LV2_CORE__isLive,
                                    LV2_CORE__hardRTCapable,
                                    LV2_CORE__inPlaceBroken};
  for (const char* s : supported)
    if (feature == s) return true;
  return false;
}

Lv2PluginInfo Lv2World::Impl::describe(const LilvPlugin* p) {
  Lv2PluginInfo info;
  info.uri = lilv_node_as_uri(lilv_plugin_get_uri(p));
  if (LilvNode* n = lilv_plugin_get_name(p)) {
    info.name = lilv_node_as_string(n);
    lilv_node_free(n);
  }
  if (const LilvPluginClass* c = lilv_plugin_get_class(p))
    info.class_label = lilv_node_as_string(lilv_plugin_class_get_label(c));
  if (const LilvNode* b = lilv_plugin_get_bundle_uri(p)) {
    char* path = lilv_file_uri_parse(lilv_node_as_uri(b), nullptr);
    if (path) {
      info.bundle = path;
      lilv_free(path);
    }
  }
  const uint32_t n_ports = lilv_plugin_get_num_ports(p);
  std::vector<float> mins(n_ports), maxs(n_ports), defs(n_ports);
  lilv_plugin_get_port_ranges_float(p, mins.data(), maxs.data(), defs.data());
  std::string odd;
  for (uint32_t i = 0; i < n_ports; ++i) {
    const LilvPort* port = lilv_plugin_get_port_by_index(p, i);
    Lv2PortInfo pi;
    pi.index = static_cast<int>(i);
    pi.symbol = lilv_node_as_string(lilv_port_get_symbol(p, port));
    if (LilvNode* n = lilv_port_get_name(p, port)) {
      pi.name = lilv_node_as_string(n);
      lilv_node_free(n);
    }
    pi.input = lilv_port_is_a(p, port, input);
    pi.output = lilv_port_is_a(p, port, output);
    if (lilv_port_is_a(p, port, audio))
      pi.kind = "audio";
    else if (lilv_port_is_a(p, port, control))
      pi.kind = "control";
    else if (lilv_port_is_a(p, port, atom))
      pi.kind = "atom";
    else if (lilv_port_is_a(p, port, cv))
      pi.kind = "cv";
    else
      pi.kind = "other";
    pi.toggled = lilv_port_has_property(p, port, toggled);
    pi.integer = lilv_port_has_property(p, port, integer);
    pi.enumeration = lilv_port_has_property(p, port, enumeration);
    pi.logarithmic = lilv_port_has_property(p, port, logarithmic);
    pi.reports_latency = lilv_port_has_property(p, port, latency);
    pi.optional = lilv_port_has_property(p, port, optional);
    if (pi.kind == "control") {
      float lo = std::isnan(mins[i]) ? 0.0f : mins[i];
      float hi = std::isnan(maxs[i]) ? (pi.toggled ? 1.0f : std::max(lo, 1.0f)) : maxs[i];
      if (hi < lo) std::swap(lo, hi);
      float d = std::isnan(defs[i]) ? lo : defs[i];
      pi.minimum = lo;
      pi.maximum = hi;
      pi.default_value = std::min(std::max(d, lo), hi);
    }
    if (pi.kind == "audio") {
      if (pi.input) info.audio_inputs++;
      if (pi.output) info.audio_outputs++;
    }
    if ((pi.kind == "atom" || pi.kind == "cv" || pi.kind == "other") && !pi.optional && odd.empty())
      odd = pi.kind == "atom" ? "a MIDI/atom port (" + pi.symbol + ")" : "a " + pi.kind + " port (" + pi.symbol + ")";
    info.ports.push_back(std::move(pi));
  }
  info.has_latency = lilv_plugin_has_latency(p);
  LilvNodes* req = lilv_plugin_get_required_features(p);
  std::string missing;
  LILV_FOREACH(nodes, it, req) {
    std::string f = lilv_node_as_uri(lilv_nodes_get(req, it));
    info.required_features.push_back(f);
    if (!host_supports(f) && missing.empty()) missing = f;
  }
  lilv_nodes_free(req);

  const std::string who = "the LV2 plugin " + info.uri;
  if (info.audio_inputs == 0 || info.audio_outputs == 0)
    info.unsupported = who + " has no audio " + (info.audio_inputs == 0 ? "input" : "output") +
                       " (an instrument, a meter or a MIDI utility), so it cannot be an insert: pick an audio effect";
  else if (!((info.audio_inputs == 1 && info.audio_outputs == 1) ||
             (info.audio_inputs == 2 && info.audio_outputs == 2)))
    info.unsupported = who + " has " + std::to_string(info.audio_inputs) + " audio inputs and " +
                       std::to_string(info.audio_outputs) +
                       " outputs; livedemix hosts mono (1 in, 1 out) and stereo (2 in, 2 out) effects: pick one of "
                       "those variants";
  else if (!odd.empty())
    info.unsupported =
        who + " needs " + odd + " that livedemix does not feed: pick a plugin with audio and control ports only";
  else if (!missing.empty())
    info.unsupported =
        who + " requires the host feature " + missing + ", which livedemix does not provide: pick another plugin";
  return info;
}

Lv2World& Lv2World::instance() {
  static Lv2World w;
  return w;
}

Lv2World::Lv2World() : impl_(new Impl) {
  Impl& I = *impl_;
  I.world = lilv_world_new();
  {
    StderrCapture quiet;
    lilv_world_load_all(I.world);
    I.load_messages = quiet.finish();
  }
  I.audio = lilv_new_uri(I.world, LV2_CORE__AudioPort);
  I.control = lilv_new_uri(I.world, LV2_CORE__ControlPort);
  I.input = lilv_new_uri(I.world, LV2_CORE__InputPort);
  I.output = lilv_new_uri(I.world, LV2_CORE__OutputPort);
  I.atom = lilv_new_uri(I.world, LV2_ATOM__AtomPort);
  I.cv = lilv_new_uri(I.world, LV2_CORE__CVPort);
  I.latency = lilv_new_uri(I.world, LV2_CORE__reportsLatency);
  I.toggled = lilv_new_uri(I.world, LV2_CORE__toggled);
  I.integer = lilv_new_uri(I.world, LV2_CORE__integer);
  I.enumeration = lilv_new_uri(I.world, LV2_CORE__enumeration);
  I.logarithmic = lilv_new_uri(I.world, LV2_PORT_PROPS__logarithmic);
  I.optional = lilv_new_uri(I.world, LV2_CORE__connectionOptional);
}

Lv2World::~Lv2World() {
  Impl& I = *impl_;
  for (LilvNode* n : {I.audio, I.control, I.input, I.output, I.atom, I.cv, I.latency, I.toggled, I.integer,
                      I.enumeration, I.logarithmic, I.optional})
    lilv_node_free(n);
  lilv_world_free(I.world);
}

void Lv2World::load_bundle(const std::string& directory) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string dir = directory;
  if (dir.empty() || dir.back() != '/') dir += '/';
  LilvNode* uri = lilv_new_file_uri(impl_->world, nullptr, dir.c_str());
  if (!uri) throw PluginError("cannot read the LV2 bundle " + directory + ": pass the path of a *.lv2 directory");
  lilv_world_load_bundle(impl_->world, uri);
  lilv_node_free(uri);
}

std::vector<Lv2PluginInfo> Lv2World::list() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<Lv2PluginInfo> out;
  const LilvPlugins* all = lilv_world_get_all_plugins(impl_->world);
  LILV_FOREACH(plugins, it, all) out.push_back(impl_->describe(lilv_plugins_get(all, it)));
  return out;
}

bool Lv2World::has(const std::string& uri) {
  std::lock_guard<std::mutex> lock(mutex_);
  return impl_->find(uri) != nullptr;
}

Lv2PluginInfo Lv2World::info(const std::string& uri) {
  std::lock_guard<std::mutex> lock(mutex_);
  const LilvPlugin* p = impl_->find(uri);
  if (!p)
    throw PluginError("the LV2 plugin " + uri +
                      " is not installed: check the URI with `livedemix plugins list`, or install its package");
  return impl_->describe(p);
}

// ---- slot -------------------------------------------------------------------------------

struct InsertSlot::Features {
  float rate;
  int32_t min_block, max_block;
  LV2_Options_Option options[4];
  LV2_Feature options_feature{LV2_OPTIONS__options, nullptr};
  const LV2_Feature* list[6];
};

InsertSlot::InsertSlot(const std::string& uri, double sample_rate, int channels, int max_block)
    : channels_(channels), max_block_(max_block), sample_rate_(sample_rate) {
  if (channels < 1 || channels > 2) throw std::invalid_argument("an insert runs on 1 or 2 channels");
  if (max_block < 1) throw std::invalid_argument("max_block must be >= 1");
  Lv2World& world = Lv2World::instance();
  info_ = world.info(uri);
  if (!info_.unsupported.empty()) throw PluginError(info_.unsupported);
  const bool mono = info_.audio_inputs == 1;
  if (!mono && channels_ != 2)
    throw PluginError("the LV2 plugin " + uri + " is stereo but this signal is mono: use a mono variant");
  per_instance_channels_ = mono ? 1 : 2;
  const int n_inst = mono ? channels_ : 1;
  const int n_ports = static_cast<int>(info_.ports.size());

  in_.assign(static_cast<size_t>(channels_) * max_block_, 0.0f);
  out_.assign(static_cast<size_t>(channels_) * max_block_, 0.0f);
  dry_.assign(static_cast<size_t>(channels_) * max_block_, 0.0f);
  controls_.assign(n_ports, 0.0f);
  control_outputs_.assign(static_cast<size_t>(n_inst) * n_ports, 0.0f);
  targets_.reset(new std::atomic<float>[n_ports]);
  for (const auto& p : info_.ports) {
    controls_[p.index] = p.default_value;
    targets_[p.index].store(p.default_value);
    if (p.kind == "audio" && p.input) audio_in_ports_.push_back(p.index);
    if (p.kind == "audio" && p.output) audio_out_ports_.push_back(p.index);
    if (p.kind == "control" && p.output && p.reports_latency) latency_port_ = p.index;
  }

  features_.reset(new Features);
  Features& F = *features_;
  std::lock_guard<std::mutex> lock(world.mutex());
  Lv2World::Impl& W = *world.impl();
  F.rate = static_cast<float>(sample_rate);
  F.min_block = 1;
  F.max_block = max_block_;
  const LV2_URID t_int = W.id(LV2_ATOM__Int), t_float = W.id(LV2_ATOM__Float);
  F.options[0] = {LV2_OPTIONS_INSTANCE, 0, W.id(LV2_PARAMETERS__sampleRate), sizeof(float), t_float, &F.rate};
  F.options[1] = {LV2_OPTIONS_INSTANCE, 0, W.id(LV2_BUF_SIZE__minBlockLength), sizeof(int32_t), t_int, &F.min_block};
  F.options[2] = {LV2_OPTIONS_INSTANCE, 0, W.id(LV2_BUF_SIZE__maxBlockLength), sizeof(int32_t), t_int, &F.max_block};
  F.options[3] = {LV2_OPTIONS_INSTANCE, 0, 0, 0, 0, nullptr};
  F.options_feature.data = F.options;
  F.list[0] = &W.map_feature;
  F.list[1] = &W.unmap_feature;
  F.list[2] = &F.options_feature;
  F.list[3] = &W.bounded_feature;
  F.list[4] = nullptr;

  const LilvPlugin* plugin = W.find(uri);
  for (int k = 0; k < n_inst; ++k) {
    LilvInstance* inst = lilv_plugin_instantiate(plugin, sample_rate, F.list);
    if (!inst) {
      for (void* p : instances_) lilv_instance_free(static_cast<LilvInstance*>(p));
      instances_.clear();
      throw PluginError("the LV2 plugin " + uri + " failed to instantiate at " +
                        std::to_string(static_cast<int>(sample_rate)) +
                        " Hz: check that its package is complete, or pick another plugin");
    }
    instances_.push_back(inst);
    for (const auto& p : info_.ports) {
      void* buf = nullptr;
      if (p.kind == "audio") {
        const auto& list = p.input ? audio_in_ports_ : audio_out_ports_;
        const int which = static_cast<int>(std::find(list.begin(), list.end(), p.index) - list.begin());
        const int row = mono ? k : which;
        buf = (p.input ? in_.data() : out_.data()) + static_cast<size_t>(row) * max_block_;
      } else if (p.kind == "control") {
        buf = p.input ? &controls_[p.index] : &control_outputs_[static_cast<size_t>(k) * n_ports + p.index];
      }
      lilv_instance_connect_port(inst, p.index, buf);
    }
  }
}

InsertSlot::~InsertSlot() {
  deactivate();
  for (void* p : instances_) lilv_instance_free(static_cast<LilvInstance*>(p));
}

int InsertSlot::control_index(const std::string& symbol) const {
  for (const auto& p : info_.ports)
    if (p.kind == "control" && p.input && p.symbol == symbol) return p.index;
  return -1;
}

void InsertSlot::set_control(int port_index, float value) {
  if (port_index < 0 || port_index >= static_cast<int>(info_.ports.size()) ||
      info_.ports[port_index].kind != "control" || !info_.ports[port_index].input)
    throw std::out_of_range("not a control input port of " + info_.uri);
  const auto& p = info_.ports[port_index];
  if (std::isnan(value)) return;
  value = std::min(std::max(value, p.minimum), p.maximum);
  if (p.integer || p.enumeration) value = std::round(value);
  if (p.toggled) value = value >= 0.5f * (p.minimum + p.maximum) ? p.maximum : p.minimum;
  targets_[port_index].store(value, std::memory_order_relaxed);
}

float InsertSlot::control(int port_index) const {
  if (port_index < 0 || port_index >= static_cast<int>(info_.ports.size())) throw std::out_of_range("no such port");
  return targets_[port_index].load(std::memory_order_relaxed);
}

float InsertSlot::control_output(int port_index) const {
  if (port_index < 0 || port_index >= static_cast<int>(info_.ports.size())) throw std::out_of_range("no such port");
  return control_outputs_[port_index];
}

void InsertSlot::clear_fault() {
  slow_run_ = 0;
  faulted_.store(false, std::memory_order_relaxed);
}

void InsertSlot::apply_controls() {
  for (const auto& p : info_.ports)
    if (p.kind == "control" && p.input) controls_[p.index] = targets_[p.index].load(std::memory_order_relaxed);
}

void InsertSlot::run_instances(int n) {
  for (void* p : instances_) lilv_instance_run(static_cast<LilvInstance*>(p), static_cast<uint32_t>(n));
}

void InsertSlot::activate() {
  deactivate();
  for (void* p : instances_) lilv_instance_activate(static_cast<LilvInstance*>(p));
  active_ = true;
  // Run on silence for a moment: plugins write their latency port in run(), and some (x42
  // nodelay) glide to a new delay first. Offline and live both start from this state.
  apply_controls();
  std::fill(in_.begin(), in_.end(), 0.0f);
  for (int done = 0; done < kPrimeSamples;) {
    const int n = std::min(max_block_, kPrimeSamples - done);
    run_instances(n);
    done += n;
  }
  latency_ = 0;
  if (latency_port_ >= 0) {
    const float v = control_outputs_[latency_port_];
    latency_ = std::isfinite(v) && v > 0 ? static_cast<int>(std::lround(v)) : 0;
  }
  dry_delay_.reset(new DelayLine(channels_, latency_));
  clear_fault();
  wet_ = bypassed() ? 0.0f : 1.0f;
}

void InsertSlot::deactivate() {
  if (!active_) return;
  for (void* p : instances_) lilv_instance_deactivate(static_cast<LilvInstance*>(p));
  active_ = false;
}

void InsertSlot::process(float* io, std::ptrdiff_t stride, int n, double budget_seconds) {
  if (!active_ || n <= 0) return;
  if (n > max_block_) n = max_block_;  // the bindings check; never overrun the buffers
  blocks_.fetch_add(1, std::memory_order_relaxed);
  apply_controls();
  const size_t M = static_cast<size_t>(max_block_);
  for (int c = 0; c < channels_; ++c) {
    std::memcpy(in_.data() + c * M, io + c * stride, sizeof(float) * n);
    std::memcpy(dry_.data() + c * M, io + c * stride, sizeof(float) * n);
  }
  dry_delay_->process(dry_.data(), static_cast<std::ptrdiff_t>(M), n);

  const float target = (bypassed() || faulted()) ? 0.0f : 1.0f;
  bool wet_ok = false;
  if (target > 0.0f || wet_ > 0.0f) {
    const auto t0 = std::chrono::steady_clock::now();
    run_instances(n);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    last_run_seconds_.store(dt, std::memory_order_relaxed);
    float acc = 0.0f;
    for (int c = 0; c < channels_; ++c) {
      const float* o = out_.data() + c * M;
      for (int i = 0; i < n; ++i) acc += o[i] * 0.0f;  // NaN or Inf anywhere makes acc NaN
    }
    wet_ok = std::isfinite(acc) && acc == 0.0f;
    if (!wet_ok) {
      nonfinite_events_.fetch_add(1, std::memory_order_relaxed);
      faulted_.store(true, std::memory_order_relaxed);
      wet_ = 0.0f;
    }
    if (budget_seconds > 0 && dt > budget_seconds) {
      if (++slow_run_ >= kSlowBlocksToBypass) {
        slow_events_.fetch_add(1, std::memory_order_relaxed);
        faulted_.store(true, std::memory_order_relaxed);
      }
    } else {
      slow_run_ = 0;
    }
  }
  // A slot that just turned slow fades out within this block (its output of this block is
  // good): the next block does not run it again.
  const float goal = wet_ok && !faulted() ? target : 0.0f;
  for (int c = 0; c < channels_; ++c) {
    float* y = io + c * stride;
    const float* d = dry_.data() + c * M;
    const float* w = out_.data() + c * M;
    if (!wet_ok || (goal == 0.0f && wet_ == 0.0f)) {
      std::memcpy(y, d, sizeof(float) * n);
    } else if (goal == 1.0f && wet_ == 1.0f) {
      std::memcpy(y, w, sizeof(float) * n);
    } else {  // a bypass change: crossfade dry ↔ wet over this block
      const float step = (goal - wet_) / n;
      for (int i = 0; i < n; ++i) {
        const float r = wet_ + step * (i + 1);
        y[i] = d[i] + r * (w[i] - d[i]);
      }
    }
  }
  wet_ = goal;
}

// ---- chain ------------------------------------------------------------------------------

InsertChain::InsertChain(double sample_rate, int channels, int max_block)
    : sample_rate_(sample_rate), channels_(channels), max_block_(max_block) {
  if (sample_rate <= 0) throw std::invalid_argument("sample_rate must be positive");
  if (channels < 1 || channels > 2) throw std::invalid_argument("an insert chain runs on 1 or 2 channels");
  if (max_block < 1) throw std::invalid_argument("max_block must be >= 1");
}

int InsertChain::add(const std::string& uri) {
  slots_.emplace_back(new InsertSlot(uri, sample_rate_, channels_, max_block_));
  return size() - 1;
}

InsertSlot& InsertChain::slot(int i) {
  if (i < 0 || i >= size()) throw std::out_of_range("no insert slot " + std::to_string(i));
  return *slots_[i];
}

void InsertChain::activate() {
  for (auto& s : slots_) s->activate();
}

int InsertChain::latency() const {
  int total = 0;
  for (const auto& s : slots_) total += s->latency();
  return total;
}

void InsertChain::process(float* io, std::ptrdiff_t stride, int n) {
  PluginDenormalGuard ftz;
  const double budget = budget_fraction_ > 0 ? budget_fraction_ * n / sample_rate_ : 0.0;
  for (auto& s : slots_) s->process(io, stride, n, budget);
}

// ---- delay line -------------------------------------------------------------------------

DelayLine::DelayLine(int channels, int delay) : channels_(channels), delay_(std::max(0, delay)) {
  ring_.assign(static_cast<size_t>(channels_) * delay_, 0.0f);
}

void DelayLine::reset() {
  std::fill(ring_.begin(), ring_.end(), 0.0f);
  pos_ = 0;
}

void DelayLine::process(float* io, std::ptrdiff_t stride, int n) {
  if (delay_ == 0) return;
  for (int c = 0; c < channels_; ++c) {
    float* r = ring_.data() + static_cast<size_t>(c) * delay_;
    float* x = io + c * stride;
    int pos = pos_;
    for (int i = 0; i < n; ++i) {
      const float v = r[pos];
      r[pos] = x[i];
      x[i] = v;
      if (++pos == delay_) pos = 0;
    }
  }
  pos_ = static_cast<int>((pos_ + static_cast<long>(n)) % delay_);
}

// ---- time-domain mixer ------------------------------------------------------------------

TimeMixer::TimeMixer(int sources, int buses, int ramp_samples) : sources_(sources), buses_(buses), ramp_(ramp_samples) {
  if (sources < 1 || buses < 1 || ramp_samples < 1) throw std::invalid_argument("sources, buses and ramp must be >= 1");
  const int n = sources * buses;
  target_.reset(new std::atomic<float>[n]);
  for (int i = 0; i < n; ++i) target_[i].store(1.0f);
  current_.assign(n, 1.0f);
  heading_.assign(n, 1.0f);
  step_.assign(n, 0.0f);
  remaining_.assign(n, 0);
}

void TimeMixer::set_gain(int bus, int source, float g) {
  if (bus < 0 || bus >= buses_ || source < 0 || source >= sources_)
    throw std::out_of_range("bus or source out of range");
  target_[bus * sources_ + source].store(g, std::memory_order_relaxed);
}

float TimeMixer::target_gain(int bus, int source) const {
  if (bus < 0 || bus >= buses_ || source < 0 || source >= sources_)
    throw std::out_of_range("bus or source out of range");
  return target_[bus * sources_ + source].load(std::memory_order_relaxed);
}

void TimeMixer::snap_to_targets() {
  for (int i = 0; i < sources_ * buses_; ++i) {
    current_[i] = heading_[i] = target_[i].load(std::memory_order_relaxed);
    remaining_[i] = 0;
  }
}

void TimeMixer::mix_add(int bus, int source, const float* src, std::ptrdiff_t src_stride, float* dst,
                        std::ptrdiff_t dst_stride, int channels, int n) {
  const int k = bus * sources_ + source;
  const float t = target_[k].load(std::memory_order_relaxed);
  if (t != heading_[k]) {
    heading_[k] = t;
    step_[k] = (t - current_[k]) / ramp_;
    remaining_[k] = ramp_;
  }
  const float g0 = current_[k];
  if (remaining_[k] == 0) {
    if (g0 == 0.0f) return;
    for (int c = 0; c < channels; ++c) {
      const float* s = src + c * src_stride;
      float* d = dst + c * dst_stride;
      for (int i = 0; i < n; ++i) d[i] += g0 * s[i];
    }
    return;
  }
  const int m = std::min(n, remaining_[k]);  // samples still ramping in this block
  for (int c = 0; c < channels; ++c) {
    const float* s = src + c * src_stride;
    float* d = dst + c * dst_stride;
    for (int i = 0; i < n; ++i) {
      const float g = i < m ? g0 + step_[k] * (i + 1) : heading_[k];
      d[i] += (i + 1 == remaining_[k] ? heading_[k] : g) * s[i];
    }
  }
  remaining_[k] -= m;
  current_[k] = remaining_[k] == 0 ? heading_[k] : g0 + step_[k] * m;
}

}  // namespace livedemix
