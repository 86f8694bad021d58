"""Turns bench-results/results.jsonl into a markdown table and an SVG plot
of throughput and p99 against concurrency (no plotting library needed)."""
import json
import sys
from pathlib import Path

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out = Path(sys.argv[2])

lines = ["| database | mode | clients | orders/s | p50 ms | p99 ms | ceiling orders/s | service ÷ ceiling | CPU ms an order, machine / service | ceiling's CPU ÷ machine's | peak RSS MB | ready ms | CPU stolen % |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    mode = "closed loop" if r["mode"] == "closed-loop" else f"fixed {r.get('fixed_rate', 0):.0f}/s"
    ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else "–"
    cpu = (f"{r['cpu_ms_per_order']:.2f} / {r['service_cpu_ms_per_order']:.2f}"
           if r.get("cpu_ms_per_order") is not None else "–")
    cpu_ratio = f"{r['cpu_ratio']:.2f}" if r.get("cpu_ratio") is not None else "–"
    lines.append(
        f"| {r['db']} | {mode} | {r.get('concurrency') or '–'} | {r['orders_per_s']:.0f} | {r['latency_ms']['p50']:.2f} | "
        f"{r['latency_ms']['p99']:.2f} | {r.get('ceiling') or 0:.0f} | {ratio} | {cpu} | {cpu_ratio} | "
        f"{r.get('peak_rss_mb', '–')} | {r.get('ready_ms', '–')} | {r.get('steal_pct', '–')} |"
    )
ceilings = {}
for r in rows:
    if r.get("ceiling_runs"):
        ceilings.setdefault(r["db"], (r["ceiling_runs"], r.get("ceiling_cpu_ms_per_order")))
if ceilings:
    lines.append("")
    lines.append("Ceilings, before / after each sweep (the ratios use the higher): " + "; ".join(
        f"{db} {b:.0f} / {a:.0f} orders/s" + (f", the higher at {cpu:.2f} ms of CPU an order" if cpu else "")
        for db, ((b, a), cpu) in ceilings.items()))


def timeline_summary(path):
    """When the fixed-rate step's slow requests happened: its requests in
    100-ms windows by due time. A periodic stall shows as a few windows far
    above the rest; a queue that builds, as long runs of slow windows."""
    windows = {}
    with open(path) as f:
        next(f, None)
        for line in f:
            due, _lag, latency = (int(x) for x in line.split(","))
            windows.setdefault(due // 100_000, []).append(latency / 1000)
    if not windows:
        return None
    slow = {k for k, v in windows.items() if max(v) > 20}
    longest = run = 0
    for k in sorted(windows):
        # A run continues only across adjacent windows (an empty one breaks it).
        run = (run + 1 if k - 1 in slow else 1) if k in slow else 0
        longest = max(longest, run)
    medians = sorted(sorted(v)[len(v) // 2] for v in windows.values())
    return (f"{len(slow)} of {len(windows)} 100-ms windows held a request over 20 ms, "
            f"the longest run of them {longest} windows; the windows' medians ranged "
            f"{medians[0]:.1f}–{medians[-1]:.1f} ms (median of them {medians[len(medians) // 2]:.1f} ms)")


for db in sorted({r["db"] for r in rows}):
    path = out / f"{db}-fixed-rate-timeline.csv"
    if path.exists():
        summary = timeline_summary(path)
        if summary:
            lines.append("")
            lines.append(f"{db}, the fixed-rate step in time: {summary}")
    path = out / f"probe-{db}.json"
    if path.exists():
        p = json.loads(path.read_text())
        slow = (f"slow {p['slow_time_pct']:.1f} % of the time, in {p['slow_stretches']} stretches, "
                f"the longest {p['longest_slow_ms']} ms, at {p['slow_speed_pct']} % of its usual speed"
                if p.get("slow_speed_pct") else "never slow")
        lines.append("")
        lines.append(f"{db}, the machine before the sweep (`scripts/cpu_probe.py`, {p['seconds']:.0f} s of a "
                     f"fixed loop timed by its CPU time, {p['waited_pct']:.1f} % of it waiting for a core): {slow}")
table = "\n".join(lines)
(out / "results.md").write_text(table + "\n")
print(table)

# SVG: throughput (left axis) and p99 (right axis) against concurrency.
W, H, P = 720, 380, 60
series = {}
for r in rows:
    if r["mode"] == "closed-loop":
        series.setdefault(r["db"], []).append((r["concurrency"], r["orders_per_s"], r["latency_ms"]["p99"]))
if series:
    xs = sorted({c for s in series.values() for c, _, _ in s})
    max_t = max(t for s in series.values() for _, t, _ in s) * 1.1 or 1
    max_l = max(l for s in series.values() for _, _, l in s) * 1.1 or 1
    xpos = lambda c: P + (W - 2 * P) * (xs.index(c) / max(1, len(xs) - 1))
    yt = lambda t: H - P - (H - 2 * P) * t / max_t
    yl = lambda l: H - P - (H - 2 * P) * l / max_l
    colors = {"sqlite": "#1f77b4", "postgres": "#d62728"}
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W/2}" y="20" text-anchor="middle" font-size="14">Orders/s (solid) and p99 ms (dashed) by concurrency</text>',
           f'<line x1="{P}" y1="{H-P}" x2="{W-P}" y2="{H-P}" stroke="black"/>',
           f'<line x1="{P}" y1="{P}" x2="{P}" y2="{H-P}" stroke="black"/>',
           f'<line x1="{W-P}" y1="{P}" x2="{W-P}" y2="{H-P}" stroke="black"/>']
    for c in xs:
        svg.append(f'<text x="{xpos(c)}" y="{H-P+18}" text-anchor="middle">{c}</text>')
    svg.append(f'<text x="{W/2}" y="{H-15}" text-anchor="middle">concurrent clients</text>')
    for i in range(5):
        t = max_t * i / 4
        l = max_l * i / 4
        svg.append(f'<text x="{P-6}" y="{yt(t)+4}" text-anchor="end">{t:.0f}</text>')
        svg.append(f'<text x="{W-P+6}" y="{yl(l)+4}">{l:.1f}</text>')
    for n, (db, pts) in enumerate(sorted(series.items())):
        col = colors.get(db, "#2ca02c")
        pts = sorted(pts)
        svg.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (col, " ".join(f"{xpos(c)},{yt(t)}" for c, t, _ in pts)))
        svg.append('<polyline fill="none" stroke="%s" stroke-width="2" stroke-dasharray="6,4" points="%s"/>' % (col, " ".join(f"{xpos(c)},{yl(l)}" for c, _, l in pts)))
        svg.append(f'<text x="{P+10}" y="{P+15+n*16}" fill="{col}">{db}</text>')
    svg.append("</svg>")
    (out / "throughput.svg").write_text("\n".join(svg) + "\n")
