"""Plots for csmr results folders (see workloads/README.md for the CSV columns).

A run folder (summary.csv, timeseries.csv, *.hgrm) gives:
  latency-cdf.png       latency CDF per operation, log-scaled tail (from the .hgrm files)
  throughput.png        completed operations per second over the run, events marked
  latency-over-time.png p50 and p99 per second
  resources.png         resident memory per second, and syncs per second when replicas write files
  breakdown.png         stacked mean time per stage, a bar per operation (when breakdown.csv is there)
A comparison folder (compare.csv) gives:
  throughput-vs-p99.png a line per protocol/strategy through its variants (or a point per variant), legend
  variants.png          throughput and p99 per variant, as bars
  breakdown-variants.png stacked stage means per variant (when variants recorded breakdown.csv)
A sweep folder (sweep.csv, from csmr sweep or a comparison of sweeps) gives:
  sweep.png             achieved against offered, and p99 against achieved, a curve per variant, knee marked
"""
import argparse
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_hgrm(path):
    """Returns (values_us, percentiles) from HdrHistogram's percentile distribution text."""
    values, percentiles = [], []
    with open(path) as handle:
        for line in handle:
            parts = line.split()
            if len(parts) < 4 or line.lstrip().startswith(("#", "Value")):
                continue
            try:
                value, percentile = float(parts[0]), float(parts[1])
            except ValueError:
                continue
            values.append(value)
            percentiles.append(percentile)
    return values, percentiles


def plot_run(folder, out):
    hgrms = sorted(f for f in os.listdir(folder) if f.endswith(".hgrm"))
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in hgrms:
        values, percentiles = read_hgrm(os.path.join(folder, name))
        if not values:
            continue
        # x: 1/(1-p) on a log axis spreads the tail; labelled as percentiles.
        tail = [1 / (1 - p) if p < 1 else 1e6 for p in percentiles]
        ax.plot(tail, values, label=name[: -len(".hgrm")], linewidth=2.5 if name == "all.hgrm" else 1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    ax.set_xlim(1, max(10, ax.get_xlim()[1]))
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (µs)")
    ax.set_title(f"Latency by operation: {os.path.basename(folder.rstrip('/'))}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "latency-cdf.png"), dpi=110)
    plt.close(fig)

    rows = list(csv.DictReader(open(os.path.join(folder, "timeseries.csv"))))
    seconds = sorted({int(r["second"]) for r in rows})
    ops = sorted({r["op"] for r in rows if r["op"] != "all"})
    events = [(int(r["second"]), r["events"]) for r in rows if r["events"]]
    warmup = read_warmup(folder)
    fig, ax = plt.subplots(figsize=(9, 5))
    for op in ops + ["all"]:
        counts = {int(r["second"]): int(r["count"]) for r in rows if r["op"] == op}
        label = "all, achieved (completed)" if op == "all" else op
        ax.plot(seconds, [counts.get(s, 0) for s in seconds], label=label, linewidth=2.5 if op == "all" else 1)
    # Offered: requests meant to be sent in each second. Where it runs above achieved, the system
    # is saturated and a backlog grows.
    if rows and "offered" in rows[0]:
        offered = {int(r["second"]): int(r["offered"]) for r in rows if r["op"] == "all"}
        ax.plot(seconds, [offered.get(s, 0) for s in seconds], label="all, offered", color="black", linestyle="--", linewidth=1.5)
    mark(ax, events, warmup)
    ax.set_xlabel("second of the run (warm-up and drain included)")
    ax.set_ylabel("operations per second")
    ax.set_title("Throughput over time")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "throughput.png"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 5))
    all_rows = {int(r["second"]): r for r in rows if r["op"] == "all"}
    ax.plot(seconds, [int(all_rows[s]["p50_us"]) if s in all_rows else None for s in seconds], label="p50")
    ax.plot(seconds, [int(all_rows[s]["p99_us"]) if s in all_rows else None for s in seconds], label="p99")
    mark(ax, events, warmup)
    ax.set_yscale("log")
    ax.set_xlabel("second of the run (warm-up included)")
    ax.set_ylabel("latency (µs), all operations")
    ax.set_title("Latency over time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "latency-over-time.png"), dpi=110)
    plt.close(fig)

    plot_resources(folder, out, events, warmup)


def plot_resources(folder, out, events, warmup):
    """Resident memory over the run (flat once checkpoints compact), syncs per second on the right."""
    path = os.path.join(folder, "resources.csv")
    if not os.path.exists(path):
        return
    rows = list(csv.DictReader(open(path)))
    if not rows:
        return
    seconds = [int(r["second"]) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.plot(seconds, [int(r["rss_bytes"]) / 2**20 for r in rows], color="tab:blue", label="resident memory")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("second of the run (warm-up included)")
    ax.set_ylabel("resident memory (MiB)")
    syncs = [int(r["syncs"]) for r in rows]
    if any(syncs):
        right = ax.twinx()
        rate = [0] + [b - a for a, b in zip(syncs, syncs[1:])]
        right.plot(seconds, rate, color="tab:orange", linewidth=1, label="syncs per second")
        right.set_ylabel("syncs per second (all replicas)")
        right.legend(loc="lower right", fontsize=8)
    mark(ax, events, warmup)
    ax.set_title("Resident memory over time")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "resources.png"), dpi=110)
    plt.close(fig)


def read_warmup(folder):
    try:
        for line in open(os.path.join(folder, "run.yaml")):
            if line.strip().startswith("warmup_s:"):
                return float(line.split(":", 1)[1])
    except OSError:
        pass
    return None


def mark(ax, events, warmup):
    if warmup:
        ax.axvspan(0, warmup, color="grey", alpha=0.15, label="warm-up")
    for second, label in events:
        ax.axvline(second, color="red", linestyle="--", linewidth=1)
        ax.annotate(label, (second, 1), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=8, color="red")


def plot_comparison(folder, out):
    rows = list(csv.DictReader(open(os.path.join(folder, "compare.csv"))))
    header = list(rows[0].keys()) if rows else []
    fields = header[1: header.index("op")] if "op" in header else []
    # Rows of one client location (client_location set) repeat a variant's totals for a subset.
    totals = [r for r in rows if r["op"] == "all" and not r.get("client_location")]
    # A field only the comparison's sweeping variants set (sweep.csv has those) is empty here.
    fields = [f for f in fields if any(r[f] for r in totals)]

    def label(row):
        return " ".join(f"{f.split('.')[-1]}={os.path.basename(row[f]).removesuffix('.yaml')}" for f in fields if row[f]) \
            or f"variant {row['variant']}"

    if {"group.scheduler", "keys.conflict_rate", "group.cost_us", "group.workers"} <= set(fields):
        plot_scheduler_lines([{"cost": r["group.cost_us"], "rate": r["keys.conflict_rate"], "scheduler": r["group.scheduler"],
                               "workers": r["group.workers"], "ops": r["achieved_ops_s"]} for r in totals],
                             out, "schedulers.png", "Replicated cluster", "ops")

    fig, ax = plt.subplots(figsize=(9, 6))
    for name, points in series(totals, fields, label):
        xs = [float(r["achieved_ops_s"]) for r in points]
        ys = [float(r["p99_us"]) for r in points]
        line, = ax.plot(xs, ys, marker="o", linestyle="-" if len(points) > 1 else "none", label=name)
        if len(points) > 1:
            # The line's first value (in the legend's order) gets a hollow square around it.
            ax.plot(xs[:1], ys[:1], marker="s", markersize=12, markerfacecolor="none", color=line.get_color(), linestyle="none")
    ax.legend(fontsize=7, loc="best", title="□ marks each line's first value", title_fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("achieved throughput (operations/s)")
    ax.set_ylabel("p99 latency (µs)")
    ax.set_title(f"Throughput against p99: {os.path.basename(folder.rstrip('/'))}")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "throughput-vs-p99.png"), dpi=110)
    plt.close(fig)

    plot_breakdown_variants(folder, out, totals, label)

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, len(totals) * 0.9), 8), sharex=True)
    names = [label(r) for r in totals]
    positions = range(len(totals))
    top.bar(positions, [float(r["achieved_ops_s"]) for r in totals], color="tab:blue")
    top.set_ylabel("operations/s")
    top.set_title("Throughput and latency per variant")
    width = 0.4
    bottom.bar([p - width / 2 for p in positions], [float(r["p50_us"]) for r in totals], width, label="p50")
    bottom.bar([p + width / 2 for p in positions], [float(r["p99_us"]) for r in totals], width, label="p99")
    bottom.set_yscale("log")
    bottom.set_ylabel("latency (µs)")
    bottom.legend()
    bottom.set_xticks(list(positions))
    bottom.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    for axis in (top, bottom):
        axis.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "variants.png"), dpi=110)
    plt.close(fig)


def is_number(text):
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def series(rows, fields, label):
    """Groups a comparison's rows into curves: one per value of the first non-numeric varied field
    (protocol, strategy, composition), the other fields varying along it, in their order; with a
    single varied field, numeric values make one curve and names one point each. Returns
    (legend label, rows) pairs; the legend says which values the points stand for, so no label is
    printed at a point (close variants would print them on top of each other)."""
    if not fields:
        return [(label(r), [r]) for r in rows]
    named = [f for f in fields if not all(is_number(r[f]) for r in rows if r[f])]
    if len(fields) == 1:
        field = fields[0]
        if named:
            return [(label(r), [r]) for r in rows]
        points = sorted(rows, key=lambda r: float(r[field] or 0))
        return [(f"{field.split('.')[-1]}: " + " → ".join(r[field] for r in points), points)]
    key = named[0] if named else fields[0]
    along = [f for f in fields if f != key]
    groups = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    result = []
    for value, points in groups.items():
        points = sorted(points, key=lambda r: tuple(float(r[f]) if is_number(r[f]) else 0 for f in along))
        steps = " → ".join("/".join(r[f] for f in along) for r in points)
        name = os.path.basename(value).removesuffix(".yaml") if value else "(base)"
        result.append((f"{key.split('.')[-1]}={name}: {'/'.join(f.split('.')[-1] for f in along)} {steps}", points))
    return result


def plot_sweep(folder, out):
    rows = list(csv.DictReader(open(os.path.join(folder, "sweep.csv"))))
    header = list(rows[0].keys()) if rows else []
    fields = header[1: header.index("target_ops_s")] if "variant" in header else []
    curves = {}
    for row in rows:
        curves.setdefault(row.get("variant", "1"), []).append(row)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    top = 0
    for variant, points in curves.items():
        name = " ".join(f"{f.split('.')[-1]}={os.path.basename(points[0][f]).removesuffix('.yaml')}" for f in fields if points[0][f]) \
            or (f"variant {variant}" if len(curves) > 1 else "achieved")
        offered = [float(r["offered_ops_s"]) for r in points]
        achieved = [float(r["achieved_ops_s"]) for r in points]
        p99 = [max(1, float(r["p99_us"])) for r in points]
        top = max(top, *offered, *achieved)
        line, = left.plot(offered, achieved, marker="o", label=name)
        right.plot(achieved, p99, marker="o", color=line.get_color(), label=name)
        for r in points:
            if r["knee"] == "yes":
                left.plot([float(r["offered_ops_s"])], [float(r["achieved_ops_s"])], marker="*", markersize=18, color=line.get_color(),
                          markeredgecolor="black", linestyle="none")
                right.plot([float(r["achieved_ops_s"])], [max(1, float(r["p99_us"]))], marker="*", markersize=18, color=line.get_color(),
                           markeredgecolor="black", linestyle="none")
    bound = float(rows[0]["p99_bound_us"]) if rows and rows[0].get("p99_bound_us") else None
    left.plot([0, top], [0, top], linestyle=":", color="grey", label="achieved = offered")
    left.plot([0, top], [0, 0.97 * top], linestyle="--", color="grey", linewidth=0.8, label="97 % of offered")
    left.set_xlabel("offered (operations/s, steady part of each step)")
    left.set_ylabel("achieved (operations/s)")
    left.set_title("Achieved against offered (★ knee)")
    right.set_yscale("log")
    if bound:
        right.axhline(bound, color="red", linestyle="--", linewidth=1, label=f"p99 bound {bound:g} µs")
    right.set_xlabel("achieved throughput (operations/s)")
    right.set_ylabel("p99 latency (µs)")
    right.set_title("Throughput against p99 (★ knee)")
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "sweep.png"), dpi=110)
    plt.close(fig)


STAGE_COLOURS = {"client_wait": "tab:grey", "retry_wait": "tab:brown", "network": "tab:blue", "queue": "tab:orange",
                 "ordering": "tab:green", "execution": "tab:red", "hold": "tab:purple"}


def plot_breakdown(folder, out):
    rows = list(csv.DictReader(open(os.path.join(folder, "breakdown.csv"))))
    ops = [op for op in dict.fromkeys(r["op"] for r in rows)]
    stages = [s for s in STAGE_COLOURS if any(r["stage"] == s for r in rows)]
    mean = {(r["op"], r["stage"]): float(r["mean_us"]) for r in rows}
    count = {r["op"]: r["count"] for r in rows}
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(ops) + 3), 5.5))
    bottoms = [0.0] * len(ops)
    for stage in stages:
        heights = [mean.get((op, stage), 0) for op in ops]
        ax.bar(range(len(ops)), heights, bottom=bottoms, color=STAGE_COLOURS[stage], label=stage, width=0.6)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    ends = [mean.get((op, "end_to_end"), 0) for op in ops]
    ax.scatter(range(len(ops)), ends, marker="_", s=900, color="black", label="end-to-end mean", zorder=3)
    ax.set_xticks(range(len(ops)))
    ax.set_xticklabels([f"{op}\n({count[op]} sampled)" for op in ops], fontsize=8)
    ax.set_ylabel("mean time (µs)")
    ax.set_title(f"Where the time goes (sampled requests): {os.path.basename(folder.rstrip('/'))}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "breakdown.png"), dpi=110)
    plt.close(fig)


def plot_breakdown_variants(folder, out, totals, label):
    """A stacked bar of stage means (all operations) per variant that recorded a breakdown."""
    bars = []
    for row in totals:
        # With repeat, compare.csv's row is the variant's median run, kept in run-K/.
        run = f"run-{row.get('repetition')}"
        run = run if os.path.isdir(os.path.join(folder, f"variant-{row['variant']}", run)) else ""
        path = os.path.join(folder, f"variant-{row['variant']}", run, "breakdown.csv")
        if os.path.exists(path):
            means = {r["stage"]: float(r["mean_us"]) for r in csv.DictReader(open(path)) if r["op"] == "all"}
            bars.append((label(row), means))
    if not bars:
        return
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(bars) + 3), 5.5))
    bottoms = [0.0] * len(bars)
    for stage, colour in STAGE_COLOURS.items():
        heights = [means.get(stage, 0) for _, means in bars]
        ax.bar(range(len(bars)), heights, bottom=bottoms, color=colour, label=stage, width=0.6)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    ax.scatter(range(len(bars)), [means.get("end_to_end", 0) for _, means in bars], marker="_", s=900, color="black",
               label="end-to-end mean", zorder=3)
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([name for name, _ in bars], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("mean time (µs), all operations")
    ax.set_title(f"Where the time goes, per variant: {os.path.basename(folder.rstrip('/'))}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "breakdown-variants.png"), dpi=110)
    plt.close(fig)


def plot_scheduler_lines(rows, out, name, title, throughput_key):
    """Throughput against conflict rate, a line per scheduler and worker count, a panel per cost."""
    costs = sorted({float(r["cost"]) for r in rows})
    fig, axes = plt.subplots(1, len(costs), figsize=(6 * len(costs), 4.5), squeeze=False)
    for ax, cost in zip(axes[0], costs):
        lines = sorted({(r["scheduler"], int(r["workers"])) for r in rows if float(r["cost"]) == cost})
        for scheduler, workers in lines:
            if scheduler == "sequential" and workers != 1:
                continue  # the sequential scheduler ignores workers
            points = sorted((float(r["rate"]), float(r[throughput_key])) for r in rows
                            if float(r["cost"]) == cost and r["scheduler"] == scheduler and int(r["workers"]) == workers)
            label = "sequential" if scheduler == "sequential" else f"{scheduler}, {workers} worker{'s' if workers > 1 else ''}"
            style = "-" if scheduler == "sequential" else ("--" if workers == 1 else "-")
            ax.plot([p[0] * 100 for p in points], [p[1] for p in points], style, marker="o", label=label,
                    linewidth=2.5 if scheduler == "sequential" else 1.5)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks([0, 1, 10, 50, 100])
        ax.set_xticklabels(["0", "1", "10", "50", "100"])
        ax.set_xlabel("conflict rate (% of commands on one shared key)")
        ax.set_ylabel("operations/s")
        ax.set_title(f"{title}, {cost:g} µs per command")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)


def plot_executor_bench(path, out):
    rows = [{"cost": r["cost_us"], "rate": r["conflict_rate"], "scheduler": r["scheduler"], "workers": r["workers"],
             "ops": r["ops_s"]} for r in csv.DictReader(open(path))]
    plot_scheduler_lines(rows, out, "executor-schedulers.png", "Executor alone", "ops")


def main():
    parser = argparse.ArgumentParser(description="Plot a csmr run or comparison folder.")
    parser.add_argument("folder")
    parser.add_argument("--out", help="where the PNGs go (default: plots/<folder name>)")
    args = parser.parse_args()
    folder = args.folder
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = args.out or os.path.join(repo, "plots", os.path.basename(os.path.abspath(folder)).removesuffix(".csv"))
    os.makedirs(out, exist_ok=True)
    if folder.endswith(".csv") and os.path.isfile(folder):
        plot_executor_bench(folder, out)
    elif os.path.exists(os.path.join(folder, "compare.csv")):
        plot_comparison(folder, out)
        if os.path.exists(os.path.join(folder, "sweep.csv")):
            plot_sweep(folder, out)
    elif os.path.exists(os.path.join(folder, "sweep.csv")):
        plot_sweep(folder, out)
    elif os.path.exists(os.path.join(folder, "summary.csv")):
        plot_run(folder, out)
        if os.path.exists(os.path.join(folder, "breakdown.csv")):
            plot_breakdown(folder, out)
    else:
        sys.exit(f"plot: {folder} has neither summary.csv, compare.csv nor sweep.csv")
    for name in sorted(os.listdir(out)):
        if name.endswith(".png"):
            print(os.path.join(out, name))


if __name__ == "__main__":
    main()
