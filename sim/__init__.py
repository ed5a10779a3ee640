"""The virtual-time simulator: the real runtime, hours of traffic in seconds.

`load_scenario` reads a scenario file, `simulate` runs it and returns a
`Report` (the same bytes for the same scenario, seed and backend), `compare`
runs policy variants and sweeps side by side over several seeds. See
DESIGN.md §7 and ``python -m connector.sim --help``.
"""

from ._backends import TRIO_TESTED, run_virtual
from ._calls import CALL_SHAPES, CallShape, LogicalCall
from ._compare import METRICS, Comparison, Estimate, Point, compare
from ._distributions import Constant, Empirical, Exponential, Latency, LogNormal
from ._guard import RealWorldGuard, VirtualTimeViolation
from ._loop import VirtualTimeLoop
from ._plot import PlotUnavailable, plot_comparison, plot_report
from ._provider import (
    Brownout,
    Concurrency,
    FakeProvider,
    Outage,
    ProviderModel,
    ProviderStats,
    Quota,
    SimulatedBug,
)
from ._report import (
    BreakerChange,
    BreakerSummary,
    Depth,
    Incident,
    LimiterSummary,
    Percentiles,
    Provenance,
    ProviderSummary,
    Report,
    Retries,
    Series,
    ServiceReport,
)
from ._scenario import Scenario, ScenarioError, ServiceSpec, Sweep, load_scenario, parse_scenario
from ._simulate import Progress, simulate
from ._streams import fork
from ._table import comparison_tables, report_table
from ._workload import Burst, Diurnal, Workload

__all__ = [
    "CALL_SHAPES",
    "METRICS",
    "TRIO_TESTED",
    "BreakerChange",
    "BreakerSummary",
    "Brownout",
    "Burst",
    "CallShape",
    "Comparison",
    "Concurrency",
    "Constant",
    "Depth",
    "Diurnal",
    "Empirical",
    "Estimate",
    "Exponential",
    "FakeProvider",
    "Incident",
    "Latency",
    "LimiterSummary",
    "LogNormal",
    "LogicalCall",
    "Outage",
    "Percentiles",
    "PlotUnavailable",
    "Point",
    "Progress",
    "Provenance",
    "ProviderModel",
    "ProviderStats",
    "ProviderSummary",
    "Quota",
    "RealWorldGuard",
    "Report",
    "Retries",
    "Scenario",
    "ScenarioError",
    "Series",
    "ServiceReport",
    "ServiceSpec",
    "SimulatedBug",
    "Sweep",
    "VirtualTimeLoop",
    "VirtualTimeViolation",
    "Workload",
    "compare",
    "comparison_tables",
    "fork",
    "load_scenario",
    "parse_scenario",
    "plot_comparison",
    "plot_report",
    "report_table",
    "run_virtual",
    "simulate",
]
