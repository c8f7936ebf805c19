/* A small LV2 effect that misbehaves on demand, for the plugin host's tests (a real plugin
 * bundle, built by tests/test_plugins.py): mode 0 passes audio through, mode 1 outputs NaN,
 * mode 2 passes audio through but takes twice the block's duration (busy-waits). */
#include <lv2/core/lv2.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  const float* mode;
  const float* in;
  float* out;
  double rate;
} Misbehave;

static LV2_Handle instantiate(const LV2_Descriptor* d, double rate, const char* path, const LV2_Feature* const* f) {
  (void)d;
  (void)path;
  (void)f;
  Misbehave* self = (Misbehave*)calloc(1, sizeof(Misbehave));
  if (self) self->rate = rate;
  return self;
}

static void connect_port(LV2_Handle h, uint32_t port, void* data) {
  Misbehave* self = (Misbehave*)h;
  if (port == 0) self->mode = (const float*)data;
  if (port == 1) self->in = (const float*)data;
  if (port == 2) self->out = (float*)data;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void run(LV2_Handle h, uint32_t n) {
  Misbehave* self = (Misbehave*)h;
  const int mode = (int)lrintf(*self->mode);
  if (mode == 1) {
    for (uint32_t i = 0; i < n; ++i) self->out[i] = NAN;
    return;
  }
  memmove(self->out, self->in, sizeof(float) * n);
  if (mode == 2) {
    const double until = now() + 2.0 * n / self->rate;
    while (now() < until) {
    }
  }
}

static void cleanup(LV2_Handle h) { free(h); }

static const LV2_Descriptor descriptor = {"urn:livedemix:test:misbehave", instantiate, connect_port, NULL, run, NULL,
                                          cleanup, NULL};

LV2_SYMBOL_EXPORT const LV2_Descriptor* lv2_descriptor(uint32_t index) { return index == 0 ? &descriptor : NULL; }
