"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand.

Only counters, gauges and histograms with labels are needed, so the format is written directly
(https://prometheus.io/docs/instrumenting/exposition_formats/) rather than adding a dependency:
``# HELP`` and ``# TYPE`` lines, then one ``name{label="value"} number`` line per series;
a histogram is its cumulative ``_bucket{le="..."}`` series ending in ``le="+Inf"``, plus ``_sum``
and ``_count``.
"""
from __future__ import annotations

import bisect
import threading

__all__ = ["Registry", "LATENCY_BUCKETS", "BATCH_BUCKETS"]

#: Request latency buckets in seconds (Prometheus client libraries' defaults, 5 ms .. 10 s,
#: with 1 ms and 2.5 ms added: a small model answers in a few milliseconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
                   2.5, 5.0, 7.5, 10.0)
#: Batch size buckets: powers of two up to the largest sensible batch.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names, values, extra=()) -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)] + list(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(x) -> str:
    if x == float("inf"):
        return "+Inf"
    return repr(float(x)) if isinstance(x, float) else str(x)


class _Metric:
    def __init__(self, name, help_text, kind, labelnames):
        self.name, self.help, self.kind = name, help_text, kind
        self.labelnames = tuple(labelnames)
        self.series: dict = {}

    def header(self):
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class _Counter(_Metric):
    def inc(self, *labels, amount=1):
        self.series[labels] = self.series.get(labels, 0) + amount

    def lines(self):
        return [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}"
                for k, v in sorted(self.series.items())]


class _Gauge(_Metric):
    def __init__(self, name, help_text, labelnames, read=None):
        super().__init__(name, help_text, "gauge", labelnames)
        self.read = read                 # callable returning {labels: value}, read at scrape

    def set(self, *labels, value):
        self.series[labels] = value

    def lines(self):
        series = self.read() if self.read is not None else self.series
        return [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}"
                for k, v in sorted(series.items())]


class _Histogram(_Metric):
    def __init__(self, name, help_text, labelnames, buckets):
        super().__init__(name, help_text, "histogram", labelnames)
        self.buckets = tuple(buckets)

    def observe(self, *labels, value):
        counts, total = self.series.get(labels, ([0] * (len(self.buckets) + 1), [0.0, 0]))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        total[0] += value
        total[1] += 1
        self.series[labels] = (counts, total)

    def lines(self):
        out = []
        for k, (counts, total) in sorted(self.series.items()):
            cumulative = 0
            for bound, c in zip(self.buckets + (float("inf"),), counts):
                cumulative += c
                le = f'le="{_number(bound) if bound != float("inf") else "+Inf"}"'
                out.append(f"{self.name}_bucket{_labels(self.labelnames, k, [le])} {cumulative}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, k)} {_number(total[0])}")
            out.append(f"{self.name}_count{_labels(self.labelnames, k)} {total[1]}")
        return out


class Registry:
    """The server's metrics; every update and the rendering hold one lock."""

    def __init__(self):
        self._lock = threading.Lock()
        self._metrics: list = []

    def _add(self, metric):
        self._metrics.append(metric)
        return metric

    def counter(self, name, help_text, labelnames=()):
        return self._add(_Counter(name, help_text, "counter", labelnames))

    def gauge(self, name, help_text, labelnames=(), read=None):
        return self._add(_Gauge(name, help_text, labelnames, read))

    def histogram(self, name, help_text, labelnames=(), buckets=LATENCY_BUCKETS):
        return self._add(_Histogram(name, help_text, labelnames, buckets))

    def update(self, fn, *args, **kwargs):
        """Call ``fn(*args, **kwargs)`` (e.g. ``counter.inc``) under the registry's lock."""
        with self._lock:
            fn(*args, **kwargs)

    def render(self) -> str:
        with self._lock:
            lines = []
            for m in self._metrics:
                lines += m.header() + m.lines()
        return "\n".join(lines) + "\n"
