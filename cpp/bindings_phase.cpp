// Python bindings of the phase-recovery stage (PhaseRecovery). Filled in by the phase issue.
#include <pybind11/pybind11.h>
namespace py = pybind11;

void bind_phase_recovery(py::module_& m) { (void)m; }
