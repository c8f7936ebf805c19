// TEMPORARY (branch `phase` only): minimal module so the phase bindings build before main's
// bindings.cpp lands. When merging main, take main's version of this file.
#include <pybind11/pybind11.h>
void bind_phase_recovery(pybind11::module_&);
PYBIND11_MODULE(_core, m) { bind_phase_recovery(m); }
