// Counts heap allocations made by this process, so a test can assert that a region of code
// (thousands of `process` calls) allocates nothing. Include in exactly one translation unit
// per test executable: it replaces the global operator new/delete and malloc family.
#pragma once
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>

namespace alloc_counter {
inline std::atomic<long> g_allocations{0};
inline std::atomic<bool> g_counting{false};

inline void note() {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
}

// RAII region: counts allocations between construction and `count()`.
struct Region {
  Region() {
    g_allocations = 0;
    g_counting = true;
  }
  ~Region() { g_counting = false; }
  long count() const { return g_allocations.load(); }
};
}  // namespace alloc_counter

extern "C" void* __libc_malloc(size_t);
extern "C" void* __libc_calloc(size_t, size_t);
extern "C" void* __libc_realloc(void*, size_t);

extern "C" void* malloc(size_t n) {
  alloc_counter::note();
  return __libc_malloc(n);
}
extern "C" void* calloc(size_t a, size_t b) {
  alloc_counter::note();
  return __libc_calloc(a, b);
}
extern "C" void* realloc(void* p, size_t n) {
  alloc_counter::note();
  return __libc_realloc(p, n);
}

void* operator new(std::size_t n) {
  alloc_counter::note();
  if (void* p = __libc_malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  alloc_counter::note();
  void* p = nullptr;
  if (posix_memalign(&p, static_cast<size_t>(a), n ? n : 1) != 0) throw std::bad_alloc();
  return p;
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

// Minimal assertion helpers shared by the C++ tests (no framework: ctest reads the exit code).
#define LD_CHECK(cond)                                                              \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::exit(1);                                                                 \
    }                                                                               \
  } while (0)
