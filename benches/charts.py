"""Charts for benches/compare.py: latency percentile curves and throughput over time, one
PNG per workload, with one line per system. matplotlib is imported lazily so that a
missing install costs the charts, not the table."""

import math

# Percentiles are spread on a "nines" axis (50, 90, 99, 99.9 ... equally spaced), where
# tails are visible; the maximum sits half a step past the last finite percentile.
TICKS = [(50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p99.9"), (99.99, "p99.99")]


def _nines(p):
    return math.log10(100.0 / (100.0 - p)) if p < 100 else None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def matplotlib_ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def latency_chart(path, title, curves, styles=None):
    """curves: {label: [[percentile, ms], ...]} as loadgen prints them; styles: {label:
    matplotlib line keywords}, e.g. one colour per system and dashes for end-to-end."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    last_x = 0.0
    for label, points in curves.items():
        finite = [(p, ms) for p, ms in points if 50.0 <= p < 100.0 and ms is not None]
        if not finite:
            continue
        xs = [_nines(p) for p, _ in finite]
        ys = [max(ms, 0.01) for _, ms in finite]
        top = [ms for p, ms in points if p >= 100.0]
        if top:
            xs.append(xs[-1] + 0.5)
            ys.append(max(top[0], 0.01))
        last_x = max(last_x, xs[-1])
        ax.plot(xs, ys, label=label, **{"marker": "o", "markersize": 3, **(styles or {}).get(label, {})})
    ticks = [(_nines(p), name) for p, name in TICKS if _nines(p) <= last_x]
    if last_x:
        ticks.append((last_x, "max"))
    ax.set_xticks([x for x, _ in ticks], [name for _, name in ticks])
    ax.set_yscale("log")
    ticker = matplotlib_ticker()
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def throughput_chart(path, title, series, warmup_s=None, unit="MB/s"):
    """series: {label: (interval_s, [rate per interval, ...])}; a dashed line marks the end
    of warm-up. The last interval is left out: it holds only the tail of the run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, (interval, values) in series.items():
        if len(values) > 1:
            ax.plot([i * interval for i in range(len(values) - 1)], values[:-1], label=label)
    if warmup_s:
        ax.axvline(warmup_s, color="grey", linestyle="--", linewidth=1, label="end of warm-up")
    ax.set_xlabel("seconds since the client started")
    ax.set_ylabel(unit)
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
