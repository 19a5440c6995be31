"""The C++ main loop of the bench's Verilator models: cocotb's, plus the clock, fast-forwarded.

cocotb's Verilator main (``cocotb/share/lib/verilator/verilator.cpp``) runs every time step
through the VPI: after each ``eval`` it settles value-change callbacks, calls the ReadWrite,
ReadOnly and NextSimTime callbacks, looks up the next deadline and the next timed event.
With the clock a Verilog delay loop (``--timing``) that is one pass per clock edge, and on
the no-head benchmark it took about a fifth of the simulator's CPU beside the design.

:func:`main_cpp` is the same loop (same order of regions and callbacks, the same command
line: ``--trace``, ``--trace-file``, ``--trace-flush``) with two changes:

* the clock is the test top's input ``clk``, driven here: rising edges at multiples of the
  period (edge ``n`` at ``n`` periods), falling edges half a period later; the model is built
  without ``--timing`` (nothing in the bench waits on a delay);
* fast-forward: while the only callbacks cocotb has registered are timed ones (no
  value-change, ReadWrite, ReadOnly or NextSimTime callback: cocotb code runs only inside
  callbacks, so none can appear meanwhile), every clock edge before cocotb's next deadline
  is just the edge and ``eval`` (and the trace dump, with waves), without the VPI. The
  bench's cocotb test (:mod:`lstmfpga.sim.cocotb_tb`) waits with ``Timer`` only, so the
  whole run is fast-forwarded between its few wake-ups; a test waiting on an edge gets
  cocotb's loop on every edge, as before.

The text goes into the build directory and the build's content key.
"""

from __future__ import annotations

__all__ = ["MAIN_FILE", "main_cpp"]

#: The main's file name in the build directory (compiled instead of cocotb's).
MAIN_FILE = "lstmfpga_main.cpp"

_MAIN = r"""// The bench's Verilator main: cocotb's loop (cocotb/share/lib/verilator/verilator.cpp,
// Copyright cocotb contributors, Revised BSD License) with the clock driven here and
// fast-forwarded between cocotb's timed callbacks. Written by lstmfpga.sim.verilator_main.
#include <libgen.h>
#include <stdio.h>

#include <algorithm>
#include <memory>
#include <string>

#include "Vtop.h"
#include "verilated.h"
#include "verilated_vpi.h"

#if VM_TRACE
#if VM_TRACE_FST
#include <verilated_fst_c.h>
using verilated_trace_t = VerilatedFstC;
#else
#include <verilated_vcd_c.h>
using verilated_trace_t = VerilatedVcdC;
#endif
static verilated_trace_t *tfp;
#endif

// Half a clock period in simulator time units (the time precision).
static const vluint64_t HALF_PERIOD = @HALF@;
static vluint64_t main_time = 0;

double sc_time_stamp() { return main_time; }

extern "C" {
void vlog_startup_routines_bootstrap(void);
}
// The model's evaluation without Vtop::eval_step's end-of-eval bookkeeping (two mutexes).
class Vtop___024root;
void Vtop___024root___eval(Vtop___024root *vlSelf);

static inline bool settle_value_callbacks() {
    bool cbs_called, again;
    cbs_called = again = VerilatedVpi::callValueCbs();
    while (again) again = VerilatedVpi::callValueCbs();
    return cbs_called;
}

// No callback but timed ones: nothing but a deadline can wake cocotb.
static inline bool only_timed_callbacks() {
    return !VerilatedVpi::hasCbs(cbValueChange) && !VerilatedVpi::hasCbs(cbReadWriteSynch) &&
           !VerilatedVpi::hasCbs(cbReadOnlySynch) && !VerilatedVpi::hasCbs(cbNextSimTime) &&
           !VerilatedVpi::evalNeeded();
}

static inline void dump(vluint64_t time, bool flush) {
#if VM_TRACE
    if (tfp) {
        tfp->dump(time);
        if (flush) tfp->flush();
    }
#endif
}

static void wrap_up() {
    VerilatedVpi::callCbs(cbEndOfSimulation);
#if VM_TRACE
    if (tfp) tfp->close();
#endif
}

int main(int argc, char **argv) {
#if VM_TRACE_FST
    const char *traceFile = "dump.fst";
#else
    const char *traceFile = "dump.vcd";
#endif
    bool traceOn = false;
    bool traceFlush = false;
    for (int i = 1; i < argc; i++) {
        std::string arg = std::string(argv[i]);
        if (arg == "--trace") {
#if VM_TRACE
            traceOn = true;
#else
            fprintf(stderr, "Error: --trace requires the design to be built with trace support\n");
            return -1;
#endif
        } else if (arg == "--trace-flush") {
            traceFlush = true;
        } else if (arg == "--trace-file") {
            if (++i < argc) {
                traceFile = argv[i];
            } else {
                fprintf(stderr, "Error: --trace-file requires a parameter\n");
                return -1;
            }
        }
    }

    Verilated::commandArgs(argc, argv);
    std::unique_ptr<Vtop> top(new Vtop(""));
    Verilated::fatalOnVpiError(false);  // otherwise it will fail on systemtf
#if VM_TRACE
    Verilated::traceEverOn(true);
    if (traceOn) {
        tfp = new verilated_trace_t;
        top->trace(tfp, 99);
        tfp->open(traceFile);
    }
#endif
    top->clk = 0;

    vlog_startup_routines_bootstrap();
    Verilated::addExitCb([](void *) { wrap_up(); }, nullptr);
    VerilatedVpi::callCbs(cbStartOfSimulation);
    settle_value_callbacks();

    while (!Verilated::gotFinish()) {
        // One time step as cocotb's main runs it.
        do {
            do {
                top->eval_step();
                VerilatedVpi::clearEvalNeeded();
                VerilatedVpi::doInertialPuts();
                settle_value_callbacks();
            } while (VerilatedVpi::evalNeeded());
            VerilatedVpi::callCbs(cbReadWriteSynch);
            VerilatedVpi::doInertialPuts();
            settle_value_callbacks();
        } while (VerilatedVpi::evalNeeded());
        top->eval_end_step();
        VerilatedVpi::callCbs(cbReadOnlySynch);
        dump(main_time, traceFlush);
        if (Verilated::gotFinish()) break;

        // The clock's edges before cocotb's next deadline, without the VPI, while only a
        // timed callback can wake cocotb.
        vluint64_t deadline = VerilatedVpi::cbNextDeadline();
        vluint64_t edge = (main_time / HALF_PERIOD + 1) * HALF_PERIOD;
        if (only_timed_callbacks()) {
            while (edge < deadline && !Verilated::gotFinish()) {
                main_time = edge;
                if ((edge / HALF_PERIOD) % 2 == 0) {
                    top->clk = 1;
                    top->eval_step();
                } else {  // nothing is sensitive to it: the root's eval only (no end-of-eval)
                    top->clk = 0;
                    Vtop___024root___eval(top->rootp);
                }
                top->eval_end_step();
                dump(main_time, traceFlush);
                edge += HALF_PERIOD;
            }
            if (Verilated::gotFinish()) break;
        }

        // The next time step: the next edge or cocotb's deadline, whichever is first.
        main_time = std::min(edge, deadline);
        if (main_time == edge) top->clk = (edge / HALF_PERIOD) % 2 == 0;
        VerilatedVpi::callCbs(cbNextSimTime);
        settle_value_callbacks();
        VerilatedVpi::callTimedCbs();
        settle_value_callbacks();
    }

    top->final();
    wrap_up();
#if VM_TRACE
    if (tfp) {
        delete tfp;
        tfp = nullptr;
    }
#endif
    if (Verilated::threadContextp()->errorCount() > 0) return 1;
    return 0;
}
"""


def main_cpp(half_period: int) -> str:
    """The main's C++ text for a clock of ``2 * half_period`` simulator time units (the
    precision of the build's timescale)."""
    if not isinstance(half_period, int) or half_period < 1:
        raise ValueError(f"half_period must be a positive integer, not {half_period!r}")
    return _MAIN.replace("@HALF@", f"{half_period}ULL")
