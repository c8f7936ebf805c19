// LV2 effect inserts hosted with lilv (world → plugin → instance, as jalv does).
//
// Lv2World: the process-wide plugin catalogue (LV2_PATH, plus bundles loaded explicitly).
// Discovery and instantiation take a mutex; they run on control threads, never on the audio
// thread.
//
// InsertSlot: one plugin in a chain, running on a stereo (or mono) signal. A plugin with one
// audio input and one audio output runs one instance per channel; a plugin with two of each
// runs one instance. Anything else (no audio ports, 1→2, MIDI/atom/CV ports that are not
// optional, required host features livedemix does not provide) is refused with one sentence.
// Ports are connected once, in the constructor, to buffers sized for max_block.
//
// InsertChain: slots in series, run in place on a [C][n] block. Real-time contract: after
// `activate()`, `process()` never allocates, locks, logs or does I/O (tested by counting
// allocations). Control values are written from any thread into atomics (clamped to the
// port's range) and copied into the ports at the next block boundary. A slot whose output is
// NaN/Inf, or which takes longer than its time budget for several blocks in a row, is
// bypassed (dry signal, delayed by its latency so timing does not move) and counted; the rest
// of the chain keeps running. Plugins run with denormals flushed to zero (FTZ/DAZ). A plugin's latency
// (lv2:reportsLatency output port) is read after activation; the chain's latency is the sum, and a bypassed slot keeps
// its delay.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace livedemix {

class DelayLine;

// A user-facing plugin problem (not installed, not hostable, failed to instantiate, unknown
// parameter): the message is one sentence that says what to do.
struct PluginError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Lv2PortInfo {
  int index = 0;
  std::string symbol, name;
  std::string kind;  // "audio", "control", "atom", "cv", "other"
  bool input = false, output = false;
  float minimum = 0, maximum = 1, default_value = 0;
  bool toggled = false, integer = false, enumeration = false, logarithmic = false;
  bool reports_latency = false, optional = false;
};

struct Lv2PluginInfo {
  std::string uri, name, class_label, bundle;
  std::vector<Lv2PortInfo> ports;
  int audio_inputs = 0, audio_outputs = 0;
  bool has_latency = false;
  std::vector<std::string> required_features;
  std::string unsupported;  // empty when livedemix can host it, else the reason (one sentence)
};

class Lv2World {
 public:
  static Lv2World& instance();
  ~Lv2World();
  Lv2World(const Lv2World&) = delete;
  Lv2World& operator=(const Lv2World&) = delete;

  // Adds one bundle directory (e.g. a plugin built by a test) to the catalogue.
  void load_bundle(const std::string& directory);
  std::vector<Lv2PluginInfo> list();
  bool has(const std::string& uri);
  Lv2PluginInfo info(const std::string& uri);  // throws PluginError if not installed

  // Internals for InsertSlot (under the world's mutex).
  struct Impl;
  Impl* impl() { return impl_.get(); }
  std::mutex& mutex() { return mutex_; }

 private:
  Lv2World();
  std::unique_ptr<Impl> impl_;
  std::mutex mutex_;
};

class InsertSlot {
 public:
  InsertSlot(const std::string& uri, double sample_rate, int channels, int max_block);
  ~InsertSlot();
  InsertSlot(const InsertSlot&) = delete;
  InsertSlot& operator=(const InsertSlot&) = delete;

  const Lv2PluginInfo& info() const { return info_; }
  int instances() const { return static_cast<int>(instances_.size()); }

  // Any thread. Port index of a control input by symbol (-1 if none).
  int control_index(const std::string& symbol) const;
  // Any thread: the value is clamped to the port's range and applied at the next block.
  void set_control(int port_index, float value);
  float control(int port_index) const;         // last value asked for (clamped)
  float control_output(int port_index) const;  // last value the plugin wrote (meters, latency)
  void set_bypass(bool on) { bypass_.store(on, std::memory_order_relaxed); }
  bool bypassed() const { return bypass_.load(std::memory_order_relaxed); }
  // A slot that misbehaved passes the signal through dry until cleared (or re-activated).
  bool faulted() const { return faulted_.load(std::memory_order_relaxed); }
  void clear_fault();

  // Control thread: (re)start the plugin from its initial state, run it once on silence so
  // that it reports its latency, and size the bypass delay line. Not real-time safe.
  void activate();
  void deactivate();
  int latency() const { return latency_; }

  // Audio thread: process [C][n] in place (row c at io + c*stride). Time budget in seconds for
  // this block (0: no check).
  void process(float* io, std::ptrdiff_t stride, int n, double budget_seconds);

  long nonfinite_events() const { return nonfinite_events_.load(std::memory_order_relaxed); }
  long slow_events() const { return slow_events_.load(std::memory_order_relaxed); }
  long blocks() const { return blocks_.load(std::memory_order_relaxed); }
  double last_run_seconds() const { return last_run_seconds_.load(std::memory_order_relaxed); }
  static constexpr int kSlowBlocksToBypass = 3;
  static constexpr int kPrimeSamples = 8192;  // silence run by activate()

 private:
  void apply_controls();
  void run_instances(int n);

  Lv2PluginInfo info_;
  int channels_, max_block_;
  double sample_rate_;
  std::vector<void*> instances_;  // LilvInstance*
  int per_instance_channels_ = 1;
  std::vector<int> audio_in_ports_, audio_out_ports_;
  std::vector<float> in_, out_;  // [C][max_block]
  std::vector<float> controls_;  // one value per port (connected for control ports)
  std::unique_ptr<std::atomic<float>[]> targets_;
  std::vector<float> control_outputs_;  // per instance × port: the output ports' buffers
  std::vector<float> dummy_;            // for ports nothing should read
  std::atomic<bool> bypass_{false}, faulted_{false};
  bool active_ = false;
  int latency_ = 0;
  int latency_port_ = -1;
  std::unique_ptr<DelayLine> dry_delay_;  // the dry path, delayed like the wet one
  std::vector<float> dry_;                // [C][max_block]
  struct Features;
  std::unique_ptr<Features> features_;  // options (sample rate, block bounds) for the instances
  float wet_ = 1.0f;                    // current wet amount (crossfades over one block on bypass changes)
  int slow_run_ = 0;
  std::atomic<long> nonfinite_events_{0}, slow_events_{0}, blocks_{0};
  std::atomic<double> last_run_seconds_{0.0};
};

class InsertChain {
 public:
  InsertChain(double sample_rate, int channels, int max_block);

  // Control thread, before activate(): appends a plugin; returns its slot index.
  int add(const std::string& uri);
  int size() const { return static_cast<int>(slots_.size()); }
  InsertSlot& slot(int i);
  void activate();  // every slot; then latency() is valid
  int latency() const;
  int channels() const { return channels_; }
  int max_block() const { return max_block_; }
  double sample_rate() const { return sample_rate_; }
  // Fraction of a block's duration one slot may take before it counts as slow (0: never).
  void set_budget_fraction(double f) { budget_fraction_ = f; }
  double budget_fraction() const { return budget_fraction_; }

  // Audio thread: in place, no allocation.
  void process(float* io, std::ptrdiff_t stride, int n);

 private:
  double sample_rate_;
  int channels_, max_block_;
  double budget_fraction_ = 0.0;
  std::vector<std::unique_ptr<InsertSlot>> slots_;
};

// A fixed delay of `delay` samples on C channels, in place, for blocks up to any size.
class DelayLine {
 public:
  DelayLine(int channels, int delay);
  void process(float* io, std::ptrdiff_t stride, int n);
  void reset();
  int delay() const { return delay_; }

 private:
  int channels_, delay_, pos_ = 0;
  std::vector<float> ring_;  // [C][delay]
};

// Time-domain counterpart of StemMixer for stems that leave the STFT-domain mixer (their own
// ISTFT and insert chain): dst_b += g[b][s]·src_s, gains ramped linearly per sample over
// ramp_samples when a target changes. Targets are atomics written from any thread.
class TimeMixer {
 public:
  TimeMixer(int sources, int buses, int ramp_samples);
  void set_gain(int bus, int source, float g);
  float target_gain(int bus, int source) const;
  void snap_to_targets();
  // Audio thread: dst [C][n] += ramped gain × src [C][n]; advances that pair's ramp by n.
  void mix_add(int bus, int source, const float* src, std::ptrdiff_t src_stride, float* dst, std::ptrdiff_t dst_stride,
               int channels, int n);

 private:
  int sources_, buses_, ramp_;
  std::unique_ptr<std::atomic<float>[]> target_;
  std::vector<float> current_, heading_, step_;
  std::vector<int> remaining_;
};

}  // namespace livedemix
